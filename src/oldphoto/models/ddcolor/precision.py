"""Which number format DDColor runs in: `faithful` (float32, the authors' computation) or `fast` (`--precision`,
`OLDPHOTO_PRECISION`).

Fast means bfloat16 on a CPU that computes it natively (the `avx512_bf16` or `amx_bf16` flag in /proc/cpuinfo) and
float16 on CUDA; anything else, float32. On the CPU it is taken per model only where `benchmarks/precision.py`
measured what a person would see (CIEDE2000 between fast and faithful results on real photos: mean < 1.0 and
p99 < 2.5) and a pass that is actually faster than the faithful runtime (ONNX Runtime in float32): the
measurements are in `CPU_BF16` below and in docs/benchmarks.md. On CUDA float16 is taken only when a probe input's
ab stays within `HALF_TOLERANCE_AB` of float32 (colorizer.py), until `benchmarks/gpu_check.py` has measured it.

Every decision is a `PrecisionPlan`: the format used and a reason code that the `inference` stage event carries
(`precision`, docs/protocol.md) and `oldphoto restore` prints. This module imports no torch at its top: deciding (the
web process validates options) needs none; `lower_segments` and `torch_dtype` import it when called.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from oldphoto.models.ddcolor.segments import Segment

PrecisionName = Literal["faithful", "fast"]
PRECISIONS: tuple[str, ...] = ("faithful", "fast")
DtypeName = Literal["float32", "bfloat16", "float16"]

# What a person would not see (issue 12): CIEDE2000 between fast and faithful results, per photo.
MAX_MEAN_DE00 = 1.0
MAX_P99_DE00 = 2.5
# Below this speed-up over the faithful runtime, fast is not worth a colour difference.
MIN_SPEEDUP = 1.1
# The CPU flags that say bfloat16 arithmetic is native (AVX-512 BF16 dot products, AMX tiles); without them PyTorch
# emulates it, slower than float32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")

# Reason codes (docs/protocol.md, `precision.reason`), each with a sentence in protocol/i18n.py (`precision.<code>`).
REASONS: tuple[str, ...] = (
    "faithful",  # asked for faithful: float32
    "fast",  # fast in effect: bfloat16 on this CPU, float16 on CUDA
    "no_native_bf16",  # fast asked for on a CPU without native bfloat16: float32
    "unmeasured_model",  # fast asked for with a model whose encoder was never measured: float32
    "colour_limit",  # fast measured beyond the colour limits for this model: float32
    "not_faster",  # fast measured no faster than faithful for this model: float32
    "device",  # fast asked for on a device other than the CPU and CUDA: float32
    "half_probe",  # float16 on CUDA left float32 beyond tolerance on the probe input: float32
    "runtime",  # the network cannot run as segments (not the official layout): float32
)


@dataclass(frozen=True)
class Measured:
    """What benchmarks/precision.py measured for one encoder in bfloat16 on the CPU (the worst photo)."""

    mean_de00: float
    p99_de00: float
    speedup: float  # the faithful runtime's median time over fast's

    @property
    def reason(self) -> str:
        """`fast` when it keeps the colour limits and is faster, else why not."""
        if self.mean_de00 >= MAX_MEAN_DE00 or self.p99_de00 >= MAX_P99_DE00:
            return "colour_limit"
        if self.speedup < MIN_SPEEDUP:
            return "not_faster"
        return "fast"


# benchmarks/precision.py on a 2-core Sapphire Rapids VM (AVX-512 BF16, AMX) shared with other work, the six photos
# of ../shared/photos at 512 px, random weights (docs/benchmarks.md, section 12): the worst photo's ΔE00, and the
# speed-up with two threads per runtime in the calmest run. Per core (one thread each, the stable measurement on a
# shared machine) tiny was 1.23x and large 1.93x; with two threads PyTorch's threads wait for each other at every
# operation when the cores are busy, and tiny lost in every such run (0.65-0.90x): its gain is in the encoder, and
# its colour decoder and folded tail run faster on ONNX Runtime than in PyTorch. Keyed by spandrel's encoder name:
# tiny is convnext-t, the three large official checkpoints convnext-l.
CPU_BF16: dict[str, Measured] = {
    "convnext-t": Measured(mean_de00=0.081, p99_de00=0.676, speedup=0.90),
    "convnext-l": Measured(mean_de00=0.035, p99_de00=0.434, speedup=1.54),
}
# The blocks that run in the low precision (name prefixes): the encoder and the decoder's upsampling, most of the
# arithmetic. The colour decoder and the folded tail stay float32: lowered too, tiny's colours moved 4x more (mean
# ΔE00 0.27 against 0.07, p99 1.0 against 0.67) and the pass was slower (0.91x against 1.12x, one thread).
LOW_PRECISION_BLOCKS: tuple[str, ...] = ("encoder.", "decoder.upsample")


@dataclass(frozen=True)
class PrecisionPlan:
    """The format a colorizer runs in, why, and which blocks run in it (the others in float32)."""

    requested: PrecisionName = "faithful"
    dtype: DtypeName = "float32"
    reason: str = "faithful"
    blocks: tuple[str, ...] = LOW_PRECISION_BLOCKS

    @property
    def lowered(self) -> bool:
        return self.dtype != "float32"

    def fallback(self, reason: str) -> PrecisionPlan:
        """The same request run in float32, for this reason."""
        return replace(self, dtype="float32", reason=reason)

    def runs_low(self, block: str) -> bool:
        """Whether this block runs in the low precision."""
        return self.lowered and block.startswith(self.blocks)

    def event(self) -> dict[str, str]:
        """The `precision` field of an event (docs/protocol.md)."""
        return {"requested": self.requested, "dtype": self.dtype, "reason": self.reason}


FAITHFUL = PrecisionPlan()


def plan(requested: str, device_type: str, encoder: str | None, flags: Collection[str] | None = None) -> PrecisionPlan:
    """The plan for a precision asked for, on a device type (`cpu`, `cuda`, ...), for a model's encoder.

    `flags`: the CPU's flags (None: this machine's, from /proc/cpuinfo).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested == "faithful":
        return FAITHFUL
    fast = PrecisionPlan(requested="fast", dtype="float32", reason="fast")
    if device_type == "cuda":
        return replace(fast, dtype="float16")  # checked on a probe when the engine is built (colorizer.py)
    if device_type != "cpu":
        return fast.fallback("device")
    if not has_native_bf16(cpu_flags() if flags is None else flags):
        return fast.fallback("no_native_bf16")
    measured = CPU_BF16.get(encoder or "")
    if measured is None:
        return fast.fallback("unmeasured_model")
    if measured.reason != "fast":
        return fast.fallback(measured.reason)
    return replace(fast, dtype="bfloat16")


def candidate_dtype(device_type: str, flags: Collection[str] | None = None) -> DtypeName:
    """The format fast would use on this device whatever the measurements say (what the benchmarks measure)."""
    if device_type == "cuda":
        return "float16"
    if device_type == "cpu" and has_native_bf16(cpu_flags() if flags is None else flags):
        return "bfloat16"
    return "float32"


def has_native_bf16(flags: Collection[str]) -> bool:
    return not NATIVE_BF16_FLAGS.isdisjoint(flags)


@functools.cache
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is none, as on macOS and Windows)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    return parse_flags(text)


def parse_flags(cpuinfo: str) -> frozenset[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            return frozenset(value.split())
    return frozenset()


# spandrel's names for the ConvNeXt encoders DDColor is built with, by their blocks per stage and channels.
ENCODERS: dict[tuple[tuple[int, ...], tuple[int, ...]], str] = {
    ((3, 3, 9, 3), (96, 192, 384, 768)): "convnext-t",
    ((3, 3, 27, 3), (96, 192, 384, 768)): "convnext-s",
    ((3, 3, 27, 3), (128, 256, 512, 1024)): "convnext-b",
    ((3, 3, 27, 3), (192, 384, 768, 1536)): "convnext-l",
}


def encoder_name(network: Any) -> str | None:
    """`convnext-t` (tiny), `convnext-l` (the large official checkpoints), ... or None for another network."""
    try:
        arch = network.encoder.arch
        depths = tuple(len(stage) for stage in arch.stages)
        dims = tuple(int(getattr(arch, f"norm{i}").weight.shape[0]) for i in range(len(depths)))
    except (AttributeError, TypeError):
        return None
    return ENCODERS.get((depths, dims))


def torch_dtype(name: DtypeName) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def lower_segments(segments: Iterable[Segment], precision: PrecisionPlan) -> list[Segment]:
    """The segments with the weights of the plan's blocks stored in its format (copies: the network stays float32).

    Autocast alone casts every weight again at every call, which on a 2-core CPU took back most of what bfloat16
    gains (a 768x3072 linear layer: 9 ms to cast, 40 ms to multiply). Spectral norm is baked into the copied
    weights first (its eval-mode weight, as the network computes it: no power iteration), so that no division is
    done in the low precision. Norm layers keep float32 weights; autocast runs them in float32.

    The network's encoder hooks must hold no feature from a pass that tracked gradients (spandrel's dry run leaves
    some; `Colorizer` drops them first): deepcopy refuses such tensors.
    """
    if not precision.lowered:
        return list(segments)
    dtype = torch_dtype(precision.dtype)
    return [_lowered(segment, dtype) if precision.runs_low(segment.name) else segment for segment in segments]


def _lowered(segment: Segment, dtype: torch.dtype) -> Segment:
    from torch import nn
    from torch.nn.utils import remove_spectral_norm

    module = copy.deepcopy(segment.module)
    for layer in list(module.modules()):
        with contextlib.suppress(ValueError):  # raised for a layer without spectral norm
            remove_spectral_norm(layer)
        # MultiheadAttention: its input projection is a parameter of its own (its output one is a Linear).
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d | nn.MultiheadAttention):
            layer.to(dtype)
    return replace(segment, module=module.eval())
