"""A job's workflow as the prompt a ComfyUI instance runs (its API form), checked against what the instance has.

Two ways in (docs/comfyui.md, "What is mapped"):
- this service's own workflow (the seed's form, `steps`, or the API form with this service's node types), already
  validated by the engine: each node becomes ComfyUI's equivalent (`DDColor` -> kijai's `DDColor_Colorize`, an
  upscale -> `UpscaleModelLoader` + `ImageUpscaleWithModel`, `Sharpen` -> `ImageSharpen`); a node with no
  equivalent (`Denoise`) is refused, naming it;
- a prompt already in ComfyUI's API form with ComfyUI's own node types, run as it is after a check against the
  instance's `/object_info` (unknown node type, missing or unknown input, a value outside its list or range, a link
  to no node: refused, naming the node).
Either way every `LoadImage` loads the job's uploaded photo and every `SaveImage` saves under `oldphoto/<job id>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from oldphoto.engine.context import RunOptions
from oldphoto.engine.graph import Workflow
from oldphoto.engine.nodes import NODE_TYPES
from oldphoto.engine.nodes.colorize import DDColorOptions
from oldphoto.engine.nodes.sharpen import SharpenOptions
from oldphoto.engine.nodes.upscale import UpscaleOptions
from oldphoto.errors import InvalidWorkflow

Prompt = dict[str, dict[str, Any]]
MAX_PROMPT_NODES = 64


def is_comfy_prompt(data: Any) -> bool:
    """ComfyUI's API form: an object of node ids, each with a `class_type`."""
    return isinstance(data, Mapping) and bool(data) and all(isinstance(v, Mapping) and "class_type" in v for v in data.values())


def from_workflow(workflow: Workflow, options: RunOptions, object_info: Mapping[str, Any], model: str | None = None) -> Prompt:
    """This service's workflow as ComfyUI nodes; the photo and output prefix are set later (`for_job`)."""
    prompt: Prompt = {}
    outputs: dict[str, list[Any]] = {}  # our node id -> the ComfyUI output that stands for its image
    for node_id in workflow.order:
        spec = workflow.nodes[node_id]
        source = [outputs[link.source] for link in spec.inputs.values()][:1]
        image = source[0] if source else None
        match spec.type:
            case "LoadImage":
                prompt[node_id] = {"class_type": "LoadImage", "inputs": {"image": ""}}
                outputs[node_id] = [node_id, 0]
            case "SaveImage":
                prompt[node_id] = {"class_type": "SaveImage", "inputs": {"images": image, "filename_prefix": "oldphoto"}}
            case "DDColor":
                own = cast(DDColorOptions, NODE_TYPES["DDColor"].options_from(spec))
                size = own.input_size or options.input_size
                checkpoint = f"{own.model or model or options.model}.pth"
                inputs = {"image": image, "model_input_size": size, "checkpoint": checkpoint}
                prompt[node_id] = {"class_type": "DDColor_Colorize", "inputs": inputs}
                outputs[node_id] = [node_id, 0]
                if own.upscale:
                    outputs[node_id] = _upscale(prompt, f"{node_id}.upscale", [node_id, 0], own.upscale_model, object_info, node_id)
            case "Upscale":
                upscale = cast(UpscaleOptions, NODE_TYPES["Upscale"].options_from(spec))
                outputs[node_id] = _upscale(prompt, node_id, image, upscale.model, object_info, node_id)
            case "Sharpen":
                sharpen = cast(SharpenOptions, NODE_TYPES["Sharpen"].options_from(spec))
                radius = max(1, min(31, round(sharpen.radius)))
                sharp = {"image": image, "sharpen_radius": radius, "sigma": max(0.1, sharpen.radius / 2), "alpha": sharpen.amount}
                prompt[node_id] = {"class_type": "ImageSharpen", "inputs": sharp}
                outputs[node_id] = [node_id, 0]
            case other:
                raise InvalidWorkflow(f"{other} has no ComfyUI equivalent in this service's mapping (docs/comfyui.md)", node=node_id)
    check(prompt, object_info)
    return prompt


def _upscale(prompt: Prompt, node_id: str, image: Any, model: str, object_info: Mapping[str, Any], named: str) -> list[Any]:
    """An upscale as ComfyUI's core nodes, with the instance's model file whose name starts with `model`."""
    files = _choices(object_info, "UpscaleModelLoader", "model_name")
    found = sorted(f for f in files if f.rsplit(".", 1)[0] == model) or sorted(f for f in files if f.startswith(model))
    if not found:
        raise InvalidWorkflow(f"the ComfyUI instance has no upscale model named {model!r} in models/upscale_models", node=named)
    prompt[f"{node_id}.model"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": found[0]}}
    prompt[node_id] = {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": [f"{node_id}.model", 0], "image": image}}
    return [node_id, 0]


def for_job(prompt: Prompt, image: str, job_id: str) -> Prompt:
    """The prompt with the job's uploaded photo in every LoadImage and its own output prefix on every SaveImage."""
    out: Prompt = {}
    for node_id, node in prompt.items():
        inputs = dict(node.get("inputs") or {})
        if node.get("class_type") == "LoadImage":
            inputs["image"] = image
        elif node.get("class_type") == "SaveImage":
            inputs["filename_prefix"] = f"oldphoto/{job_id}"
        out[node_id] = {**node, "inputs": inputs}
    return out


def check(prompt: Mapping[str, Any], object_info: Mapping[str, Any]) -> None:
    """The prompt against the instance's node types, as ComfyUI's own validation would judge it, but before admission."""
    if not is_comfy_prompt(prompt):
        raise InvalidWorkflow("a ComfyUI prompt is an object of nodes, each with a class_type")
    if len(prompt) > MAX_PROMPT_NODES:
        raise InvalidWorkflow(f"at most {MAX_PROMPT_NODES} nodes are allowed")
    if not any(node["class_type"] == "SaveImage" for node in prompt.values()):
        raise InvalidWorkflow("the prompt saves nothing: it needs a SaveImage node")
    for node_id, node in prompt.items():
        class_type = str(node["class_type"])
        info = object_info.get(class_type)
        if info is None:
            raise InvalidWorkflow(f"the ComfyUI instance has no node type {class_type!r}", node=node_id)
        _check_inputs(str(node_id), node.get("inputs") or {}, info.get("input") or {}, prompt)


def _check_inputs(node_id: str, given: Mapping[str, Any], declared: Mapping[str, Any], prompt: Mapping[str, Any]) -> None:
    required, optional = declared.get("required") or {}, declared.get("optional") or {}
    for name in required:
        if (name not in given and name not in ("image",)) or (name == "image" and name not in given):
            raise InvalidWorkflow(f"input {name!r} is missing", node=node_id)
    for name, value in given.items():
        spec = required.get(name) or optional.get(name)
        if spec is None:
            if name == "upload":  # LoadImage's upload widget: the page's, harmless
                continue
            raise InvalidWorkflow(f"unknown input {name!r}", node=node_id)
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
            if value[0] not in prompt:
                raise InvalidWorkflow(f"input {name!r} links to node {value[0]!r}, which is not in the prompt", node=node_id)
            continue
        _check_value(node_id, name, value, spec)


def _check_value(node_id: str, name: str, value: Any, spec: Any) -> None:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else None
    limits = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if kind == "COMBO":  # ComfyUI's newer way to say a list of choices
        kind = list(limits.get("options") or [])
    if isinstance(kind, list):  # a combo: one of the listed values
        if kind and value not in kind and name != "image":
            raise InvalidWorkflow(f"input {name!r}: {value!r} is not one of the instance's {len(kind)} choices", node=node_id)
    elif kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidWorkflow(f"input {name!r} must be a number", node=node_id)
        low, high = limits.get("min"), limits.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidWorkflow(f"input {name!r} must be between {low} and {high}, not {value}", node=node_id)


def _choices(object_info: Mapping[str, Any], class_type: str, name: str) -> list[str]:
    spec = ((object_info.get(class_type) or {}).get("input") or {}).get("required", {}).get(name)
    if not isinstance(spec, (list, tuple)) or not spec:
        return []
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
        return [str(c) for c in spec[1].get("options") or []]
    return [str(c) for c in spec[0]] if isinstance(spec[0], list) else []
