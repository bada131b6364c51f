"""Parsing hostile workflows in-process (issue 11, item 5): every failure is an InvalidWorkflow, a 4xx.

The server-level property test (tests/server/test_hostile_input.py) sends a few dozen workflows over HTTP; this one
tries many more, quickly, straight at `parse_workflow`.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from oldphoto.engine.graph import parse_workflow
from oldphoto.errors import InvalidWorkflow
from tests.helpers.hostile import hostile_requests

TYPES = ["LoadImage", "DDColor", "Denoise", "Upscale", "Sharpen", "SaveImage"]
KEYS = ["id", "type", "inputs", "params", "widgets_values", "class_type", "image", "images", "strength", "input_size", "model", "scale", "tile"]
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.sampled_from([*TYPES, "load.image", "load.0", "load.\u00b2", "x.output"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4), max_leaves=20)
node_types = st.sampled_from(TYPES) | st.text(max_size=5)
references = st.sampled_from(["load.image", "load.output", "load.0", "load.\u00b2", "nowhere.image", ["load", 0]]) | values
seed_nodes = st.fixed_dictionaries(
    {"id": st.sampled_from(["load", "x", "save", 1]) | values, "type": node_types},
    optional={"inputs": st.dictionaries(st.sampled_from(["image", "images"]), references) | values, "params": values, "widgets_values": values},
)
seed = st.fixed_dictionaries({"nodes": st.lists(seed_nodes, max_size=5)}, optional={"links": st.lists(st.lists(values, min_size=5, max_size=6), max_size=3) | values})
comfy_nodes = st.fixed_dictionaries({"class_type": node_types}, optional={"inputs": st.dictionaries(st.sampled_from(KEYS), values | st.tuples(st.sampled_from(["1", "2"]), values).map(list)) | values})
workflows = seed | st.dictionaries(st.sampled_from(["1", "2", "3"]), comfy_nodes, max_size=4) | st.fixed_dictionaries({"steps": values}) | values


def refused_or_parsed(text: str | bytes) -> None:
    try:
        parse_workflow(text)
    except InvalidWorkflow as exc:
        assert len(exc.message) < 400, exc.message


@settings(max_examples=400, deadline=None)
@given(workflows)
def test_generated_workflows_parse_or_are_invalid_workflows(workflow: object) -> None:
    refused_or_parsed(json.dumps(workflow))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_generated_text_parses_or_is_an_invalid_workflow(text: str | bytes) -> None:
    refused_or_parsed(text)


def test_the_hostile_corpus_workflows_are_invalid_workflows() -> None:
    for case in hostile_requests("workflow"):
        try:
            parse_workflow(case.value)
        except InvalidWorkflow:
            continue
        raise AssertionError(f"{case.name} was accepted")


def test_a_links_long_id_or_ends_are_cut_in_the_message() -> None:
    # Hypothesis found it under `make mutate`: a link's target was repeated whole (a 600-character message).
    long = ["x" * 50] * 20
    seed = {"nodes": [{"id": "load", "type": "LoadImage"}, {"id": "save", "type": "SaveImage"}]}
    for link in ([long, "load", 0, long, 0], [long, long, 0, "save", 0], [long, "load", 0, "save", long]):
        refused_or_parsed(json.dumps({**seed, "links": [link]}))
