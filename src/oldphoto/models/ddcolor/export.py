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


def export_lens(network: torch.nn.Module, input_size: int, folder: Path) -> dict[str, Any]:
    """The query lens (lens.py) as an ONNX graph beside a folder's segments, with its index written last; returns the
    index. Whole or not at all: two processes exporting it at once each rename a complete file into place."""
    import json
    import os

    from oldphoto.models.ddcolor.lens import LENS_FILE, LENS_INDEX, LENS_VALUE, SUB_PIXEL
    from oldphoto.models.ddcolor.segments import QueryLens, lens_inputs, query_push

    try:
        lens = QueryLens(network, SUB_PIXEL).eval()
        inputs = lens_inputs(build_segments(network, input_size, fold_tail=True))
    except Exception as exc:
        raise ExportFailed(str(exc)) from exc
    net: Any = network
    color = net.decoder.color_decoder
    hidden = color.query_feat.weight.shape[1]
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(color.num_queries, 1, hidden, generator=generator)
    out2 = torch.randn(1, lens.weight.shape[1], input_size // 4, input_size // 4, generator=generator)
    partial = folder / f".{LENS_FILE}.{os.getpid()}.partial"
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                lens,
                (queries, out2),
                str(partial),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(inputs),
                output_names=[LENS_VALUE],
                dynamic_axes={inputs[0]: {1: "batch"}, inputs[1]: {0: "batch"}, LENS_VALUE: {0: "batch"}},
            )
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise ExportFailed(f"lens: {type(exc).__name__}: {exc}"[:500]) from exc
        network.eval()
        expected = lens(queries, out2).numpy()
        push = query_push(network).numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(partial), providers=["CPUExecutionProvider"])
    got = session.run(None, {inputs[0]: queries.numpy(), inputs[1]: out2.numpy()})[0]
    scale = float(abs(expected).max()) or 1.0
    if not float(abs(got - expected).max()) <= 1e-4 * scale:
        partial.unlink(missing_ok=True)
        raise ExportFailed("the exported lens disagrees with the network")
    partial.replace(folder / LENS_FILE)
    index = {"inputs": list(inputs), "output": LENS_VALUE, "sub_pixel": list(SUB_PIXEL), "push": push.tolist()}
    temporary = folder / f".{LENS_INDEX}.{os.getpid()}.partial"
    temporary.write_text(json.dumps(index))
    temporary.replace(folder / LENS_INDEX)
    return index
