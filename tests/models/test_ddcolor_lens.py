"""The query lens (models/ddcolor/lens.py): exact responses of DDColor's colour queries at one sub-pixel, the same from
every runtime and for every member of a batch, and nothing run when it is not asked for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from oldphoto.models.ddcolor import Batcher, Colorizer
from oldphoto.models.ddcolor import lens as query_lens
from oldphoto.models.ddcolor.lens import SUB_PIXEL, TOP, QueryResponses, read
from tests.models.conftest import CPU, FAST_INPUT

# The runtimes agree to float sums in another order: responses span tens of units here.
RESPONSE_TOLERANCE = 1e-3


def gray(batch: int = 1, seed: int = 5, size: int = FAST_INPUT) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=generator).expand(batch, 3, -1, -1).contiguous().numpy()


def brute_force(network: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's own product einsum(colour_embed, shuffle(relu(last_shuf.conv(out2)))) at full resolution, before
    last_shuf's blur, from the values its forward computes; and its ab."""
    seen: dict[str, torch.Tensor] = {}
    color = network.decoder.color_decoder
    hooks = [
        color.transformer_ffn_layers[-1].register_forward_hook(lambda _m, _a, out: seen.__setitem__("q", out)),
        network.decoder.layers[2].register_forward_hook(lambda _m, _a, out: seen.__setitem__("out2", out)),
    ]
    try:
        with torch.inference_mode():
            ab = network(torch.from_numpy(x))
            embed = color.color_embed(color.decoder_norm(seen["q"]).transpose(0, 1))
            shuf = network.decoder.last_shuf
            full = F.pixel_shuffle(torch.relu(shuf.conv(seen["out2"])), 4)
            product = torch.einsum("bqc,bchw->bqhw", embed, full)
    finally:
        for hook in hooks:
            hook.remove()
    return product.numpy(), ab.numpy()


def test_the_lens_is_the_networks_product_at_its_sub_pixel(tiny_network: torch.nn.Module) -> None:
    x = gray()
    product, ab = brute_force(tiny_network, x)
    colorizer = Colorizer(tiny_network, CPU)  # the exact runtime: the network's own forward, read by hooks
    got_ab, lens = colorizer.infer_lens(x)
    assert lens is not None
    row, column = SUB_PIXEL
    sampled = product[:, :, row::4, column::4]
    assert lens.responses.shape == sampled.shape == (1, 100, FAST_INPUT // 4, FAST_INPUT // 4)
    scale = float(np.abs(sampled).max())
    assert scale > 1.0, "random weights gave no responses to compare"
    np.testing.assert_allclose(lens.responses, sampled, atol=RESPONSE_TOLERANCE * scale)
    np.testing.assert_array_equal(got_ab, ab)  # the lens does not touch the colours
    # The other 15 sub-pixels differ (the check above would pass for no position at all otherwise).
    assert float(np.abs(product[:, :, 0::4, 1::4] - sampled).max()) > 10 * RESPONSE_TOLERANCE * scale

    # The push is refine_net's weight on each query's map: the map times its column is that query's part of ab.
    refine = tiny_network.refine_net[0][0]
    with torch.no_grad():
        refine(torch.zeros(1, 103, 1, 1))  # spectral norm sets `weight` in its pre-hook
    np.testing.assert_allclose(lens.push, refine.weight[:, :100, 0, 0].numpy(), rtol=1e-5)

    # Dominance and the queries that matter most, from the brute-force product.
    strength = np.linalg.norm(lens.push, axis=0)
    contribution = np.abs(sampled[0]) * strength[:, None, None]
    reading = read(lens)
    np.testing.assert_array_equal(reading.dominant, contribution.argmax(axis=0))
    totals = contribution.sum(axis=(1, 2))
    assert list(reading.top) == list(np.argsort(-totals)[:TOP])
    assert reading.share.sum() == pytest.approx(1.0)
    assert reading.dominates.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(reading.maps[0], contribution[reading.top[0]], rtol=1e-4, atol=1e-4 * scale)


def test_the_torch_runtime_gives_the_same_lens_for_each_member_of_a_batch(tiny_network: torch.nn.Module) -> None:
    exact = Colorizer(tiny_network, CPU)
    segments = Colorizer(tiny_network, CPU, runtime="torch")
    x = np.concatenate([gray(seed=1), gray(seed=2)])
    _, alone_first = exact.infer_lens(x[:1])
    _, alone_second = exact.infer_lens(x[1:])
    _, both = segments.infer_lens(x)
    assert segments.runtime(FAST_INPUT) == "torch"
    assert alone_first is not None and alone_second is not None and both is not None
    scale = float(np.abs(both.responses).max())
    np.testing.assert_allclose(both.responses[0], alone_first.responses[0], atol=RESPONSE_TOLERANCE * scale)
    np.testing.assert_allclose(both.responses[1], alone_second.responses[0], atol=RESPONSE_TOLERANCE * scale)
    assert float(np.abs(both.responses[0] - both.responses[1]).max()) > 0.1 * scale, "two photos, one map"


def test_a_batcher_hands_each_caller_its_own_row(tiny_network: torch.nn.Module) -> None:
    colorizer = Colorizer(tiny_network, CPU, runtime="torch")
    batcher = Batcher(colorizer, max_batch=2, max_wait_s=5.0)
    images = [gray(seed=1), gray(seed=2)]
    results: dict[int, tuple[np.ndarray, QueryResponses | None]] = {}
    import threading

    def call(i: int) -> None:
        results[i] = batcher.infer_lens(images[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    batcher.close()
    assert batcher.batches_run == 1 and batcher.members_run == 2
    for i, image in enumerate(images):
        _, alone = colorizer.infer_lens(image)
        own = results[i][1]
        assert own is not None and alone is not None and own.responses.shape[0] == 1
        np.testing.assert_allclose(own.responses, alone.responses, atol=RESPONSE_TOLERANCE * float(np.abs(alone.responses).max()))


def test_without_the_lens_nothing_of_it_runs(tiny_network: torch.nn.Module, lens_calls: list[int]) -> None:
    calls = lens_calls
    for runtime in ("exact", "torch"):
        colorizer = Colorizer(tiny_network, CPU, runtime=runtime)
        colorizer.infer(gray())
        assert calls == [], runtime
        assert colorizer._lens_module is None  # never even made
        colorizer.infer_lens(gray())
        assert calls == [1], runtime
        calls.clear()


@pytest.fixture(scope="module")
def onnx_colorizer(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Colorizer:
    """The tiny checkpoint on ONNX Runtime, its graphs exported to a fresh models dir (once per module)."""
    pytest.importorskip("onnxruntime")
    from oldphoto.models.ddcolor import load_colorizer

    folder = tmp_path_factory.mktemp("lens_weights")
    weights = folder / "ddcolor_lens.pth"
    os.link(tiny_checkpoint, weights)
    colorizer, _ = load_colorizer(weights, CPU, "onnx", cache_dir=folder / "models")
    colorizer.prepare(FAST_INPUT)
    return colorizer


def test_onnx_exports_the_lens_only_when_wanted_and_gives_the_torch_maps(onnx_colorizer: Colorizer, tiny_network: torch.nn.Module) -> None:
    from oldphoto.models.ddcolor.onnx import OnnxSegments

    engine = onnx_colorizer._engine(FAST_INPUT)
    assert isinstance(engine, OnnxSegments)
    assert not (engine.folder / query_lens.LENS_FILE).exists(), "exported with the segments: the lens costs even when off"
    onnx_colorizer.infer(gray())
    assert not (engine.folder / query_lens.LENS_FILE).exists()

    onnx_colorizer.prepare(FAST_INPUT, lens=True)
    assert (engine.folder / query_lens.LENS_INDEX).is_file()
    x = np.concatenate([gray(seed=3), gray(seed=4)])
    ab, lens = onnx_colorizer.infer_batch_lens(x, lambda index, total, name: None)
    _, reference = Colorizer(tiny_network, CPU, runtime="torch").infer_lens(x)
    assert lens is not None and reference is not None
    scale = float(np.abs(reference.responses).max())
    np.testing.assert_allclose(lens.responses, reference.responses, atol=RESPONSE_TOLERANCE * scale)
    np.testing.assert_allclose(lens.push, reference.push, rtol=1e-5)
    for row in range(2):
        assert read(lens, row).top == read(reference, row).top

    # A member leaving after the lens ran: the rows left keep their own maps.
    _, kept = onnx_colorizer.infer_batch_lens(x, lambda index, total, name: [1] if index == total - 1 else None)
    assert kept is not None and kept.responses.shape[0] == 1
    np.testing.assert_allclose(kept.responses[0], reference.responses[1], atol=RESPONSE_TOLERANCE * scale)


def test_a_damaged_lens_graph_leaves_the_colours_and_gives_no_maps(
    onnx_colorizer: Colorizer, tiny_network: torch.nn.Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import shutil

    from oldphoto.models.ddcolor.onnx import OnnxSegments

    onnx_colorizer.prepare(FAST_INPUT, lens=True)
    source = onnx_colorizer._engine(FAST_INPUT)
    assert isinstance(source, OnnxSegments)
    folder = tmp_path / "graphs"
    shutil.copytree(source.folder, folder)
    (folder / query_lens.LENS_FILE).write_bytes(b"not a graph")
    manifest = json.loads((folder / "manifest.json").read_text())
    colorizer = Colorizer(tiny_network, CPU, runtime="onnx")
    colorizer._engines[FAST_INPUT] = OnnxSegments(folder, manifest, threads=1)
    x = gray()
    ab, lens = colorizer.infer_lens(x)
    assert lens is None and "query lens could not be" in caplog.text
    np.testing.assert_array_equal(ab, colorizer.infer(x))
