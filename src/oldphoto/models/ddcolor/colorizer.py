"""A loaded DDColor network on its device: gray RGB in, ab out, one forward pass at a time."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch import nn

from oldphoto.errors import OutOfMemory
from oldphoto.models.ddcolor.progress import BlockCallback, block_hooks, network_blocks


class Colorizer:
    def __init__(self, network: nn.Module, device: torch.device, *, native_input_size: int = 512, source: Path | None = None) -> None:
        self.network = network.to(device).eval()
        self.device = device
        # The input size the checkpoint was trained for (512 for every official one); a run may choose another.
        self.native_input_size = native_input_size
        self.source = source
        # DDColor keeps the encoder's features on hook objects between the encoder and the decoder, so two
        # forward passes on one network at once would read each other's features: runs take turns.
        self._lock = threading.Lock()

    @property
    def block_names(self) -> list[str]:
        return [name for name, _ in network_blocks(self.network)]

    def infer(self, gray_rgb: torch.Tensor, on_block: BlockCallback | None = None) -> torch.Tensor:
        """ab (1, 2, S, S), float32 on the CPU, for a gray RGB batch (1, 3, S, S) in 0..1.

        `on_block(index, total, name)` is called after each block; if it raises, the pass stops there and
        the exception goes up, leaving the network as it was.
        """
        with self._lock, torch.inference_mode(), block_hooks(self.network, self._synchronized(on_block)):
            try:
                return self.network(gray_rgb.to(self.device)).float().cpu()
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                message = f"Not enough memory on {self.device} to colorize at this input size; use a smaller input size or the CPU."
                raise OutOfMemory(message) from None
            finally:
                self._forget_features()

    def _synchronized(self, on_block: BlockCallback | None) -> BlockCallback | None:
        """On a GPU a hook runs when a block is queued, not done: wait for it, so progress tells the truth."""
        if on_block is None or self.device.type != "cuda":
            return on_block

        def after_block(index: int, total: int, name: str) -> None:
            torch.cuda.synchronize(self.device)
            on_block(index, total, name)

        return after_block

    def _forget_features(self) -> None:
        """Drop the encoder features the network's own hooks hold, so an idle cached model holds no activations."""
        for hook in getattr(getattr(self.network, "encoder", None), "hooks", ()):
            hook.feature = None
