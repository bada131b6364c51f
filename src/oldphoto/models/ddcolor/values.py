"""The named values that travel between DDColor's segments, and what each segment reads and writes.

Torch-free, so a process that runs cached ONNX segments (onnx.py) shares this with the PyTorch cut (segments.py)
without importing PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

INPUT = "input"
OUTPUT = "ab"


class Step(Protocol):
    """A segment as the runners see it: its name and the values it reads and writes."""

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...

    @property
    def outputs(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class StepSpec:
    """A segment known by its manifest entry only (an exported graph; no module in this process)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def batch_axis(name: str) -> int:
    """Where a value's batch dimension is: the colour decoder's queries and memories are (tokens, batch, channels)."""
    return 1 if name.startswith(("q", "src")) else 0


def last_uses(steps: Sequence[Step]) -> list[tuple[str, ...]]:
    """For each segment, the values that no later segment reads (freed once it has run)."""
    last: dict[str, int] = {}
    for index, step in enumerate(steps):
        for name in step.inputs:
            last[name] = index
    drops: list[list[str]] = [[] for _ in steps]
    for name, index in last.items():
        if name != INPUT:
            drops[index].append(name)
    return [tuple(d) for d in drops]
