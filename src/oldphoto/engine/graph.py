"""Workflows: the seed's JSON form, ComfyUI's API form and the `steps` shorthand, parsed into one validated graph.

Every problem is an `InvalidWorkflow` naming the node, raised before anything runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

from oldphoto.engine.context import RunOptions
from oldphoto.errors import InvalidWorkflow

MAX_NODES = 32
MAX_WORKFLOW_BYTES = 64 * 1024
# Real workflows nest 5 deep; a cap far below Python's recursion limit keeps every later recursive step (pydantic,
# `repr` in a message) safe from `[[[[...`, which would otherwise raise RecursionError somewhere deep inside.
MAX_DEPTH = 16
SHOWN_CHARS = 60  # how much of a bad value a message repeats
_OUTPUT_INDEX = re.compile(r"[0-9]{1,4}")
STEP_NODE_TYPES = {"denoise": "Denoise", "colorize": "DDColor", "upscale": "Upscale", "sharpen": "Sharpen"}


@dataclass(frozen=True)
class Link:
    source: str
    output: int


@dataclass(frozen=True)
class NodeSpec:
    id: str
    type: str
    inputs: dict[str, Link] = field(default_factory=dict)
    widgets: tuple[Any, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workflow:
    nodes: dict[str, NodeSpec]
    order: tuple[str, ...]

    @property
    def output_node(self) -> NodeSpec:
        return next(self.nodes[n] for n in self.order if self.nodes[n].type == "SaveImage")


def parse_workflow(data: str | bytes | Mapping[str, Any], options: RunOptions | None = None) -> Workflow:
    """Parse either accepted form and validate it against the options it will run with (the defaults if none)."""
    if isinstance(data, (str, bytes)):
        data = _loads(data)
    if not isinstance(data, Mapping):
        raise InvalidWorkflow("a workflow is a JSON object")
    if _deeper_than(data, MAX_DEPTH):
        raise InvalidWorkflow(f"the workflow is nested more than {MAX_DEPTH} levels deep")
    if set(data) == {"steps"}:
        return workflow_from_steps(data["steps"], options)
    specs = _parse_seed(data) if "nodes" in data else _parse_comfy(data)
    return validate(specs, options)


def _loads(text: str | bytes) -> Any:
    """JSON from a client: every way it can fail is an InvalidWorkflow."""
    if len(text.encode() if isinstance(text, str) else text) > MAX_WORKFLOW_BYTES:
        raise InvalidWorkflow(f"the workflow is larger than {MAX_WORKFLOW_BYTES // 1024} KB")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidWorkflow(f"the workflow is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:  # the C parser stops cleanly at Python's recursion limit
        raise InvalidWorkflow(f"the workflow is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # bytes that are not UTF-8, or an integer longer than Python converts (4300 digits)
        raise InvalidWorkflow("the workflow is not valid JSON (bad text encoding or a number too long)") from None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest deeper than `limit`; iterative, so it cannot recurse too deep itself."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, Mapping) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list, tuple)))
    return False


def _shown(value: Any) -> str:
    """A bad value, as a message repeats it: short, whatever its size."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def workflow_from_steps(steps: str | Iterable[str], options: RunOptions | None = None) -> Workflow:
    """`denoise,colorize,upscale,sharpen` as a linear workflow between LoadImage and SaveImage."""
    if not isinstance(steps, (str, list, tuple)):
        raise InvalidWorkflow("steps are a comma list such as 'denoise,colorize'")
    names = [str(s).strip().lower() for s in (steps.split(",") if isinstance(steps, str) else steps) if str(s).strip()]
    if len(names) > MAX_NODES - 2:
        raise InvalidWorkflow(f"at most {MAX_NODES - 2} steps are allowed")
    if not names:
        raise InvalidWorkflow("no steps were given")
    unknown = [s for s in names if s not in STEP_NODE_TYPES]
    if unknown:
        raise InvalidWorkflow(f"unknown step {_shown(unknown[0])}; steps are {', '.join(STEP_NODE_TYPES)}")
    specs = [NodeSpec("load_image", "LoadImage")]
    for i, name in enumerate(names):
        node_id = name if names.count(name) == 1 else f"{name}_{i + 1}"
        specs.append(NodeSpec(node_id, STEP_NODE_TYPES[name], {"image": Link(specs[-1].id, 0)}))
    specs.append(NodeSpec("save_output", "SaveImage", {"images": Link(specs[-1].id, 0)}))
    return validate(specs, options)


def validate(specs: list[NodeSpec], options: RunOptions | None = None) -> Workflow:
    from oldphoto.engine.nodes import NODE_TYPES

    options = options or RunOptions()
    if not specs:
        raise InvalidWorkflow("the workflow has no nodes")
    if len(specs) > MAX_NODES:
        raise InvalidWorkflow(f"the workflow has {len(specs)} nodes; at most {MAX_NODES} are allowed")
    nodes: dict[str, NodeSpec] = {}
    for spec in specs:
        if spec.id in nodes:
            raise InvalidWorkflow("this id is used by more than one node", node=spec.id)
        if spec.type not in NODE_TYPES:
            raise InvalidWorkflow(f"unknown node type {spec.type!r}; known types are {', '.join(NODE_TYPES)}", node=spec.id)
        nodes[spec.id] = spec
    for spec in specs:
        node_type = NODE_TYPES[spec.type]
        node_type.check_spec(spec, options)
        for name in node_type.input_names:
            if name not in spec.inputs:
                raise InvalidWorkflow(f"input {name!r} is not connected", node=spec.id)
        for name, link in spec.inputs.items():
            if name not in node_type.input_names:
                raise InvalidWorkflow(f"{spec.type} has no input {name!r}", node=spec.id)
            if link.source not in nodes:
                raise InvalidWorkflow(f"input {name!r} points to a node {link.source!r} that does not exist", node=spec.id)
            outputs = NODE_TYPES[nodes[link.source].type].output_names
            if not 0 <= link.output < len(outputs):
                raise InvalidWorkflow(
                    f"input {name!r} points to output {link.output} of {link.source!r}, which has {len(outputs)}", node=spec.id
                )
    saves = [s.id for s in specs if s.type == "SaveImage"]
    if len(saves) != 1:
        raise InvalidWorkflow(f"a workflow needs exactly one SaveImage node; this one has {len(saves)}")
    try:
        order = tuple(TopologicalSorter({s.id: {link.source for link in s.inputs.values()} for s in specs}).static_order())
    except CycleError as exc:
        raise InvalidWorkflow("the workflow has a cycle", node=str(exc.args[1][0])) from None
    needed = _ancestors(nodes, saves[0])
    return Workflow(nodes=nodes, order=tuple(n for n in order if n in needed))


def _ancestors(nodes: dict[str, NodeSpec], node_id: str) -> set[str]:
    seen, todo = set(), [node_id]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(link.source for link in nodes[current].inputs.values())
    return seen


def _parse_seed(data: Mapping[str, Any]) -> list[NodeSpec]:
    from oldphoto.engine.nodes import NODE_TYPES

    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list):
        raise InvalidWorkflow("'nodes' must be a list")
    out_names: dict[str, tuple[str, ...]] = {}
    for raw in raw_nodes:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), (str, int)) or not isinstance(raw.get("type"), str):
            raise InvalidWorkflow("every node needs an 'id' and a 'type'")
        node_type = NODE_TYPES.get(raw["type"])
        out_names[str(raw["id"])] = node_type.output_names if node_type else ()
    specs = []
    for raw in raw_nodes:
        node_id = str(raw["id"])
        raw_inputs = _mapping(raw.get("inputs"), "inputs", node_id)
        inputs = {name: _seed_reference(node_id, name, ref, out_names) for name, ref in raw_inputs.items()}
        widgets = raw.get("widgets_values") or []
        if not isinstance(widgets, list):
            raise InvalidWorkflow("'widgets_values' must be a list", node=node_id)
        params = _mapping(raw.get("params"), "params", node_id)
        specs.append(NodeSpec(node_id, raw["type"], inputs, tuple(widgets), dict(params)))
    _check_links(data.get("links") or [], {s.id: s for s in specs})
    return specs


def _mapping(value: Any, name: str, node_id: str) -> Mapping[str, Any]:
    """A node's `inputs` or `params`: an object, or absent (empty values have always meant absent)."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidWorkflow(f"{name!r} must be an object, got {_shown(value)}", node=node_id)
    return value


def _seed_reference(node_id: str, name: str, ref: Any, out_names: dict[str, tuple[str, ...]]) -> Link:
    """`"load_image.image"`: a node id, a dot, and one of that node's output names (or `output`, or an index)."""
    if isinstance(ref, list) and len(ref) == 2:
        return Link(str(ref[0]), _int_slot(node_id, name, ref[1]))
    if not isinstance(ref, str) or "." not in ref:
        raise InvalidWorkflow(f"input {name!r} must be 'node.output', got {_shown(ref)}", node=node_id)
    source, output = ref.rsplit(".", 1)
    if source not in out_names:
        raise InvalidWorkflow(f"input {name!r} points to a node {_shown(source)} that does not exist", node=node_id)
    names = out_names[source]
    if output in names:
        return Link(source, names.index(output))
    # ASCII digits only: `str.isdigit` also takes '²', which `int` refuses, and 5000 digits, which it cannot convert.
    if output == "output" or _OUTPUT_INDEX.fullmatch(output):
        return Link(source, 0 if output == "output" else int(output))
    raise InvalidWorkflow(
        f"input {name!r} points to {_shown(source)}.{_shown(output)}, but {_shown(source)} has outputs {list(names)}", node=node_id
    )


def _int_slot(node_id: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidWorkflow(f"input {name!r} has a bad output index {_shown(value)}", node=node_id)
    return value


def _check_links(links: Any, nodes: dict[str, NodeSpec]) -> None:
    """The seed's `links` must agree with the nodes' inputs: [link id, source, output, target, input slot]."""
    from oldphoto.engine.nodes import NODE_TYPES

    if not isinstance(links, list):
        raise InvalidWorkflow("'links' must be a list")
    for link in links:
        if not (isinstance(link, list) and len(link) >= 5):
            raise InvalidWorkflow(f"a link must be [id, source, output, target, input], got {_shown(link)}")
        _, source, output, target, slot = link[:5]
        source, target = str(source), str(target)
        if target not in nodes:
            raise InvalidWorkflow(f"link {_shown(link[0])} ends at a node {_shown(target)} that does not exist")
        if source not in nodes:
            raise InvalidWorkflow(f"link {_shown(link[0])} starts at a node {_shown(source)} that does not exist", node=target)
        input_names = NODE_TYPES[nodes[target].type].input_names if nodes[target].type in NODE_TYPES else ()
        if not isinstance(slot, int) or not 0 <= slot < len(input_names):
            raise InvalidWorkflow(f"link {_shown(link[0])} ends at input {_shown(slot)}, which does not exist", node=target)
        declared = nodes[target].inputs.get(input_names[slot])
        if declared is None:
            nodes[target].inputs[input_names[slot]] = Link(source, _int_slot(target, input_names[slot], output))
        elif declared.source != source:
            raise InvalidWorkflow(f"link {_shown(link[0])} disagrees with input {input_names[slot]!r}", node=target)


def _parse_comfy(data: Mapping[str, Any]) -> list[NodeSpec]:
    specs = []
    for node_id, raw in data.items():
        if not isinstance(raw, Mapping) or not isinstance(raw.get("class_type"), str):
            raise InvalidWorkflow("every node needs a 'class_type'", node=str(node_id))
        inputs, params = {}, {}
        for name, value in _mapping(raw.get("inputs"), "inputs", str(node_id)).items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and not isinstance(value[0], bool):
                inputs[name] = Link(str(value[0]), _int_slot(str(node_id), name, value[1]))
            else:
                params[name] = value
        specs.append(NodeSpec(str(node_id), raw["class_type"], inputs, (), params))
    return specs
