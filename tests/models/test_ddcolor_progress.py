from __future__ import annotations

import numpy as np
import pytest
import torch

from oldphoto.errors import Cancelled
from oldphoto.models.ddcolor import Colorizer, network_blocks
from tests.models.conftest import FAST_INPUT

EXPECTED_BLOCKS = [
    "encoder.stem", "encoder.stage1", "encoder.downsample2", "encoder.stage2",
    "encoder.downsample3", "encoder.stage3", "encoder.downsample4", "encoder.stage4",
    "decoder.upsample1", "decoder.upsample2", "decoder.upsample3", "decoder.last_shuf",
    *[f"color_decoder.layer{i}" for i in range(1, 10)],
    "refine_net",
]  # fmt: skip


def batch() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return torch.rand(1, 1, FAST_INPUT, FAST_INPUT, generator=generator).expand(1, 3, -1, -1).contiguous()


def hook_count(network: torch.nn.Module) -> int:
    return sum(len(module._forward_hooks) for module in network.modules())


def test_every_block_reports_once_in_the_order_it_runs(colorizer: Colorizer) -> None:
    events: list[tuple[int, int, str]] = []
    colorizer.infer(batch(), on_block=lambda index, total, name: events.append((index, total, name)))
    total = len(EXPECTED_BLOCKS)
    assert events == [(i, total, name) for i, name in enumerate(EXPECTED_BLOCKS, 1)]
    assert colorizer.block_names == EXPECTED_BLOCKS


def test_the_block_list_follows_the_execution_order(tiny_network: torch.nn.Module) -> None:
    """Independently of the names: the hooked modules fire in list order during a plain forward pass."""
    modules = [module for _, module in network_blocks(tiny_network)]
    fired: list[int] = []
    handles = [m.register_forward_hook(lambda m, a, o, i=i: fired.append(i)) for i, m in enumerate(modules)]
    try:
        with torch.inference_mode():
            tiny_network(batch())
    finally:
        for handle in handles:
            handle.remove()
    assert fired == list(range(len(modules)))


@pytest.mark.parametrize("stop_at", [1, 8, 13, 22])
def test_a_cancel_stops_the_pass_at_that_block_and_leaves_the_model_usable(colorizer: Colorizer, stop_at: int) -> None:
    hooks_before = hook_count(colorizer.network)
    expected = colorizer.infer(batch())
    seen: list[int] = []

    def on_block(index: int, total: int, name: str) -> None:
        seen.append(index)
        if index == stop_at:
            raise Cancelled()

    with pytest.raises(Cancelled):
        colorizer.infer(batch(), on_block=on_block)
    assert seen == list(range(1, stop_at + 1))
    assert hook_count(colorizer.network) == hooks_before
    assert all(hook.feature is None for hook in colorizer.network.encoder.hooks)
    after: list[int] = []
    again = colorizer.infer(batch(), on_block=lambda index, total, name: after.append(index))
    assert after == list(range(1, len(EXPECTED_BLOCKS) + 1))
    assert np.array_equal(again, expected)


def test_the_progress_hooks_change_no_number(colorizer: Colorizer, tiny_network: torch.nn.Module) -> None:
    with torch.inference_mode():
        plain = tiny_network(batch())
    assert np.array_equal(colorizer.infer(batch(), on_block=lambda *_: None), plain.numpy())


def test_runs_from_several_threads_take_turns(colorizer: Colorizer) -> None:
    """DDColor hands encoder features to the decoder through shared hooks; concurrent passes must not mix them."""
    from concurrent.futures import ThreadPoolExecutor

    generator = torch.Generator().manual_seed(2)
    inputs = [torch.rand(1, 1, FAST_INPUT, FAST_INPUT, generator=generator).expand(1, 3, -1, -1).contiguous() for _ in range(3)]
    expected = [colorizer.infer(x) for x in inputs]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(colorizer.infer, inputs))
    assert all(np.array_equal(r, e) for r, e in zip(results, expected, strict=True))
    assert not np.allclose(expected[0], expected[1])
