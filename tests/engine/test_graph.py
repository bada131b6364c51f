from __future__ import annotations

import json

import pytest

from oldphoto.engine.graph import MAX_NODES, parse_workflow, workflow_from_steps
from oldphoto.errors import InvalidWorkflow
from tests.helpers.workflows import SEED_EXAMPLE


def comfy(**nodes: dict) -> dict:
    return nodes


def refused(workflow: object) -> InvalidWorkflow:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(workflow if isinstance(workflow, str) else json.dumps(workflow))
    return caught.value


def test_the_seed_example_parses_as_it_stands() -> None:
    workflow = parse_workflow(json.dumps(SEED_EXAMPLE))
    assert workflow.order == ("load_image", "ddcolor_node", "save_output")
    assert workflow.nodes["ddcolor_node"].widgets == ("realesr-animevideov3", 512, False)


def test_comfy_api_form_parses_with_links_and_literals() -> None:
    workflow = parse_workflow(
        comfy(
            **{
                "9": {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}},
                "5": {"class_type": "Sharpen", "inputs": {"image": ["3", 0], "amount": 1.2}},
                "3": {"class_type": "DDColor", "inputs": {"image": ["1", 0], "input_size": 256}},
                "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
            }
        )
    )
    assert workflow.order == ("1", "3", "5", "9")
    assert workflow.nodes["5"].params == {"amount": 1.2}


def test_steps_shorthand_is_a_linear_workflow() -> None:
    workflow = workflow_from_steps("denoise, colorize,upscale,sharpen")
    assert [workflow.nodes[n].type for n in workflow.order] == ["LoadImage", "Denoise", "DDColor", "Upscale", "Sharpen", "SaveImage"]
    assert parse_workflow({"steps": "colorize"}).order == ("load_image", "colorize", "save_output")


@pytest.mark.parametrize(
    ("workflow", "node", "words"),
    [
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "b", "type": "Teleport", "inputs": {"image": "a.image"}}]}, "b", "unknown node type"),
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "s", "type": "SaveImage"}]}, "s", "not connected"),
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "s", "type": "SaveImage", "inputs": {"images": "ghost.image"}}]}, "s", "does not exist"),
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "s", "type": "SaveImage", "inputs": {"images": "a.nothing"}}]}, "s", "outputs"),
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "d", "type": "Denoise", "inputs": {"image": "a.image"}, "widgets_values": [1000]}, {"id": "s", "type": "SaveImage", "inputs": {"images": "d.output"}}]}, "d", "strength"),
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "c", "type": "DDColor", "inputs": {"image": "a.image"}, "widgets_values": ["x", 99999, False]}, {"id": "s", "type": "SaveImage", "inputs": {"images": "c.output"}}]}, "c", "input_size"),
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "c", "type": "DDColor", "inputs": {"image": "a.image"}, "params": {"model": "/etc/passwd"}}, {"id": "s", "type": "SaveImage", "inputs": {"images": "c.output"}}]}, "c", "unknown model"),
        ({"nodes": [{"id": "a", "type": "LoadImage"}, {"id": "a", "type": "SaveImage", "inputs": {"images": "a.image"}}]}, "a", "more than one"),
    ],
)
def test_bad_workflows_are_refused_naming_the_node(workflow: dict, node: str, words: str) -> None:
    error = refused(workflow)
    assert error.node == node and f"'{node}'" in error.message and words in error.message


def test_a_cycle_is_refused_naming_a_node_on_it() -> None:
    error = refused(
        comfy(
            **{
                "1": {"class_type": "Sharpen", "inputs": {"image": ["2", 0]}},
                "2": {"class_type": "Sharpen", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
            }
        )
    )
    assert "cycle" in error.message and error.node in {"1", "2"}


def test_links_must_agree_with_inputs() -> None:
    broken = json.loads(json.dumps(SEED_EXAMPLE))
    broken["links"][1] = [2, "load_image", 0, "save_output", 0]
    assert refused(broken).node == "save_output"
    dangling = json.loads(json.dumps(SEED_EXAMPLE))
    dangling["links"].append([3, "ghost", 0, "save_output", 0])
    assert "ghost" in refused(dangling).message


def test_links_alone_can_wire_the_graph() -> None:
    wired = json.loads(json.dumps(SEED_EXAMPLE))
    for node in wired["nodes"]:
        node.pop("inputs", None)
    assert parse_workflow(wired).order == ("load_image", "ddcolor_node", "save_output")


def test_size_and_node_caps() -> None:
    assert "larger" in refused("{" + " " * 70_000 + "}").message
    many = {"nodes": [{"id": f"n{i}", "type": "LoadImage"} for i in range(MAX_NODES + 1)]}
    assert "at most" in refused(many).message
    assert "JSON" in refused("{not json").message
    assert refused({"steps": "colorize,teleport"}).message.count("teleport") == 1


def test_nodes_that_do_not_lead_to_the_result_are_not_run() -> None:
    workflow = parse_workflow(
        comfy(
            **{
                "1": {"class_type": "LoadImage", "inputs": {}},
                "2": {"class_type": "Sharpen", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "Denoise", "inputs": {"image": ["1", 0]}},
                "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
            }
        )
    )
    assert workflow.order == ("1", "2", "4")


def test_steps_fill_the_node_limit_with_load_and_save_but_not_past_it() -> None:
    assert len(workflow_from_steps(["sharpen"] * (MAX_NODES - 2)).nodes) == MAX_NODES
    with pytest.raises(InvalidWorkflow, match=f"at most {MAX_NODES - 2} steps"):
        workflow_from_steps(["sharpen"] * (MAX_NODES - 1))
    with pytest.raises(InvalidWorkflow, match=f"at most {MAX_NODES - 2} steps"):
        workflow_from_steps(("sharpen",) * (MAX_NODES + 1))
    with pytest.raises(InvalidWorkflow) as refused:
        workflow_from_steps(7)  # type: ignore[arg-type]
    assert str(refused.value) == "steps are a comma list such as 'denoise,colorize'"


def test_blank_steps_are_left_out() -> None:
    assert workflow_from_steps("denoise, ,sharpen,").order == workflow_from_steps("denoise,sharpen").order
