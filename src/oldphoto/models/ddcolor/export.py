"""Exporting DDColor's segments to ONNX (needs PyTorch; onnx.py runs and caches what this makes)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from oldphoto.models.ddcolor.onnx import AGREEMENT_AB, FORMAT, OPSET, ExportFailed, ExportProgress, OnnxSegments
from oldphoto.models.ddcolor.segments import build_segments
from oldphoto.models.ddcolor.values import INPUT, batch_axis


def probe_input(input_size: int, batch: int = 1) -> torch.Tensor:
    """A gray image with smooth ramps and hard edges: what the network sees of a photo, without one."""
    side = torch.linspace(0.02, 0.98, input_size)
    image = (side[None, :] * side[:, None]).sqrt()
    quarter = input_size // 4
    image[quarter : 2 * quarter, quarter : 3 * quarter] = 0.9
    image[3 * quarter :, : 2 * quarter] = 0.08
    return image.expand(batch, 3, input_size, input_size).contiguous()


def export_segments(network: torch.nn.Module, input_size: int, folder: Path, on_progress: ExportProgress | None = None) -> dict[str, Any]:
    """Export each segment to `folder`, check the graphs against the network, and return the manifest."""
    try:
        segments = build_segments(network, input_size, fold_tail=True)
    except Exception as exc:  # UnsupportedLayout, or a network that does not even build its segments
        raise ExportFailed(str(exc)) from exc
    values: dict[str, torch.Tensor] = {INPUT: probe_input(input_size)}
    entries = []
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python values are expected here
        for index, segment in enumerate(segments, 1):
            if on_progress is not None:
                on_progress((index - 1) / len(segments), segment.name)
            args = tuple(values[name] for name in segment.inputs)
            file = f"{index:02d}-{segment.name}.onnx"
            names = (*segment.inputs, *segment.outputs)
            try:
                torch.onnx.export(
                    segment.module,
                    args,
                    str(folder / file),
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=list(segment.inputs),
                    output_names=list(segment.outputs),
                    dynamic_axes={name: {batch_axis(name): "batch"} for name in names},
                )
            except Exception as exc:
                raise ExportFailed(f"{segment.name}: {type(exc).__name__}: {exc}"[:500]) from exc
            network.eval()  # whatever the exporter did to the modes, the network stays in eval mode
            outputs = segment.module(*args)
            values.update(zip(segment.outputs, outputs if isinstance(outputs, tuple) else (outputs,), strict=True))
            entries.append({"name": segment.name, "file": file, "inputs": list(segment.inputs), "outputs": list(segment.outputs)})
        expected = network(values[INPUT]).float()
    manifest = {
        "format": FORMAT,
        "opset": OPSET,
        "input_size": input_size,
        "torch": torch.__version__,
        "segments": entries,
    }
    try:
        got = torch.from_numpy(OnnxSegments(folder, manifest, threads=torch.get_num_threads()).run(values[INPUT].numpy()))
    except Exception as exc:
        raise ExportFailed(f"the exported graphs do not run: {type(exc).__name__}: {exc}"[:500]) from exc
    difference = float((got - expected).abs().max())
    if not difference <= AGREEMENT_AB:  # also catches NaN
        raise ExportFailed(f"the exported graphs disagree with the network by {difference:.3g} in ab (limit {AGREEMENT_AB})")
    manifest["probe_max_abs_ab"] = difference
    if on_progress is not None:
        on_progress(1.0, "checked")
    return manifest
