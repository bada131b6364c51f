"""Progress inside DDColor's single forward pass: forward hooks on its blocks, in the order they run.

A DDColor forward runs the ConvNeXt encoder (stem and three downsamplings, each followed by a stage), the
pixel-shuffle decoder (three upsampling blocks and `last_shuf`), the color decoder's transformer layers, and
`refine_net`. A hook after each block calls `on_block(index, total, name)`; when that callback raises (a
`Cancelled`), the forward pass stops there. The hooks are removed whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# index (1-based), total, block name
BlockCallback = Callable[[int, int, str], None]


def network_blocks(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks of a spandrel DDColor network, named for people, in execution order."""
    net: Any = network  # spandrel's DDColor: its submodules are attributes the type checker cannot see
    encoder, decoder = net.encoder.arch, net.decoder
    blocks: list[tuple[str, nn.Module]] = []
    for i, (down, stage) in enumerate(zip(encoder.downsample_layers, encoder.stages, strict=True)):
        blocks.append(("encoder.stem" if i == 0 else f"encoder.downsample{i + 1}", down))
        blocks.append((f"encoder.stage{i + 1}", stage))
    blocks += [(f"decoder.upsample{i + 1}", layer) for i, layer in enumerate(decoder.layers)]
    blocks.append(("decoder.last_shuf", decoder.last_shuf))
    # The multi-scale color decoder (all official checkpoints) runs its layers one by one; a layer ends with its FFN.
    ffn_layers = getattr(decoder.color_decoder, "transformer_ffn_layers", None)
    if ffn_layers is not None:
        blocks += [(f"color_decoder.layer{i + 1}", ffn) for i, ffn in enumerate(ffn_layers)]
    blocks.append(("refine_net", net.refine_net))
    return blocks


@contextmanager
def block_hooks(network: nn.Module, on_block: BlockCallback | None) -> Iterator[int]:
    """Hooks that report each finished block while the context is open; yields the number of blocks."""
    blocks = network_blocks(network)
    total = len(blocks)
    if on_block is None:
        yield total
        return
    handles = [module.register_forward_hook(_reporter(on_block, index, total, name)) for index, (name, module) in enumerate(blocks, 1)]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


def _reporter(on_block: BlockCallback, index: int, total: int, name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        on_block(index, total, name)

    return hook
