"""A loaded DDColor network on its device: gray RGB in, ab out, one forward pass at a time, on a chosen runtime.

Runtimes (`OLDPHOTO_RUNTIME`; `docs/benchmarks.md` has the measurements behind the choice):

- `exact`: the network's own forward, progress from forward hooks; the authors' computation op for op. What a
  `Colorizer(network, device)` built directly gets (tests and references use it).
- `torch`: the same network cut into its 22 blocks (`segments.py`) and run block by block in eager PyTorch, with
  the algebraically folded tail (no full-resolution 256-channel feature map): about 1.7x the authors' pipeline on
  the CPU, equal to the exact output to ~1e-5 of its range. On CUDA it runs float32, like everywhere, unless the
  precision is `fast` (precision.py): then the encoder and decoder blocks run in float16 where, on a probe input,
  the result stays within `HALF_TOLERANCE_AB` of float32 (checked at first use; UNTESTED: no GPU here, see
  benchmarks/gpu_check.py), and in bfloat16 on a CPU with native bfloat16, for the models measured to keep colours.
- `onnx`: the 22 blocks exported once to ONNX and run by ONNX Runtime (`onnx.py`): about 2x the authors' pipeline
  on a 2-core CPU, more when the machine is busy. Needs `onnxruntime` (and `onnx` to export); CPU only. On another
  device, or when the export fails, it logs why and runs `torch`.
- `auto` (the setting's default, which the workflow node passes): `onnx` on the CPU where onnxruntime is installed,
  else `torch`. `load_colorizer` without a runtime leaves a model as it is (`exact` when freshly loaded).

A colorizer takes and returns numpy arrays, and imports PyTorch only when a runtime needs it: a CPU process that
finds the `onnx` graphs on disk (the usual start of a worker or of `oldphoto restore`) never builds the network, so
it neither imports PyTorch (1.7 s here) nor reads the weights into memory.

Every runtime reports the same 22 blocks and stops between two of them when `on_block` raises; the segment runtimes
run (and report) `decoder.last_shuf` after the colour decoder, where the folded tail needs it (`block_names`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from oldphoto.errors import OldphotoError, OutOfMemory
from oldphoto.models.ddcolor.precision import FAITHFUL, PrecisionPlan
from oldphoto.models.ddcolor.progress import BlockCallback

if TYPE_CHECKING:
    import torch
    from torch import nn

    from oldphoto.models.ddcolor.lens import QueryResponses
    from oldphoto.models.ddcolor.onnx import NetworkSource

log = logging.getLogger(__name__)

RuntimeName = Literal["auto", "torch", "onnx"]
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnx")
# In fast mode on CUDA, float16 is used only when the probe's ab stays this close to float32 (a level of RGB is ~0.3
# in ab). bfloat16 on the CPU moved ab by up to about 0.5 with colours well within the limits (docs/benchmarks.md,
# section 12); float16 has 3 more bits, so this bound mostly catches float16's overflows (NaN fails it too).
HALF_TOLERANCE_AB = 0.25
# (index, total, name) -> the rows of the current batch to go on with (None: all of them)
AfterBlock = Callable[[int, int, str], Sequence[int] | None]
# (fraction, what) while a runtime is being prepared (an export)
PrepareProgress = Callable[[float, str], None]
# Runtime engines (per input size) one colorizer keeps in memory: each holds its own copy of the weights as ONNX
# Runtime sessions (0.1-0.3 GB for tiny). Another size replaces it (from the disk cache: 0.5 s tiny, 4 s large).
MAX_ENGINES = 1


class Engine(Protocol):
    name: str

    @property
    def block_names(self) -> list[str]: ...

    def run(self, x: np.ndarray, after_block: AfterBlock | None) -> np.ndarray: ...

    def run_lens(self, x: np.ndarray, after_block: AfterBlock | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ab, the query lens's responses (B, Q, h, w) and the queries' push (2, Q) (lens.py)."""
        ...


class Colorizer:
    """`network` is the PyTorch network, or None with `load_network` to build it when a runtime first needs it;
    `device` is a torch device or its name (`cpu`, `cuda:0`)."""

    def __init__(
        self,
        network: nn.Module | None,
        device: torch.device | str = "cpu",
        *,
        load_network: NetworkSource | None = None,
        native_input_size: int = 512,
        source: Path | None = None,
        runtime: str = "exact",
        cache_dir: Path | None = None,
        cache_max_bytes: int | None = None,
        max_engines: int = MAX_ENGINES,
    ) -> None:
        if network is None and load_network is None:
            raise ValueError("a Colorizer needs a network or a way to load it")
        self.device_name = str(device)
        self.device_type = self.device_name.split(":")[0]
        self._network = network
        self._load_network = load_network
        self._network_lock = threading.Lock()
        if network is not None:
            self._network = network.to(self.device).eval()
        # The input size the checkpoint was trained for (512 for every official one); a run may choose another.
        self.native_input_size = native_input_size
        self.source = source
        if runtime not in (*RUNTIMES, "exact"):
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.requested_runtime = runtime
        self.cache_dir = cache_dir
        # The exported graphs on disk are held to this many bytes (None: no bound), the engines in memory to max_engines.
        self.cache_max_bytes = cache_max_bytes
        self.max_engines = max(1, max_engines)
        # DDColor keeps the encoder's features on hook objects between the encoder and the decoder, so two
        # forward passes on one network at once would read each other's features: runs take turns. (The
        # segment runtimes have no such state, but one pass at a time also bounds the memory; the Batcher is
        # the way for concurrent jobs to share a pass.)
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()
        self._engines: OrderedDict[int, Engine] = OrderedDict()  # least recently used first
        self._exact = _ExactEngine(self)
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        # The number format the next engine is built for (faithful: float32; `use_runtime(precision=...)`).
        self.precision: PrecisionPlan = FAITHFUL
        self._lens_module: nn.Module | None = None  # the query lens in PyTorch, made at its first use
        self._lens_failed: set[int] = set()  # input sizes whose ONNX lens could not be exported: not tried again

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self.device_name)

    @property
    def network(self) -> nn.Module:
        """The PyTorch network, built (and PyTorch imported) at the first use."""
        if self._network is None:
            with self._network_lock:
                if self._network is None:
                    assert self._load_network is not None
                    self._network = self._load_network().to(self.device).eval()
        return self._network

    @property
    def network_loaded(self) -> bool:
        return self._network is not None

    @property
    def block_names(self) -> list[str]:
        """The blocks a pass reports, in order (the segment runtimes run `decoder.last_shuf` after the colour decoder)."""
        for engine in self._engines.values():
            return list(engine.block_names)
        if self.planned_runtime() != "exact":
            from oldphoto.models.ddcolor.segments import UnsupportedLayout, folded_block_names

            try:
                return folded_block_names(self.network)
            except UnsupportedLayout:
                pass
        from oldphoto.models.ddcolor.progress import network_blocks

        return [name for name, _ in network_blocks(self.network)]

    # --- runtime selection ---------------------------------------------------------------------------------

    def use_runtime(
        self,
        runtime: str,
        *,
        cache_dir: Path | None = None,
        cache_max_bytes: int | None = None,
        precision: PrecisionPlan | None = None,
    ) -> None:
        """Run on this runtime (and in this precision, when given) from the next pass on (prepared runtimes for
        another one are dropped). A lowered precision runs on `torch` only: the ONNX runtime is float32."""
        if runtime not in (*RUNTIMES, "exact"):
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        with self._prepare_lock:
            if cache_dir is not None:
                self.cache_dir = cache_dir
            if cache_max_bytes is not None:
                self.cache_max_bytes = cache_max_bytes
            precision = precision or self.precision
            if runtime != self.requested_runtime or precision != self.precision:
                self.requested_runtime = runtime
                self.precision = precision
                with self._lock:
                    self._engines.clear()

    def precision_used(self, input_size: int) -> PrecisionPlan:
        """The precision a pass at this input size runs in (the plan until the engine is built), and why."""
        engine = self._engines.get(input_size)
        if isinstance(engine, _TorchSegmentsEngine):
            return engine.precision
        if engine is not None and self.precision.lowered:
            return self.precision.fallback("runtime")  # ONNX Runtime and the network's own forward: float32
        return self.precision

    def planned_runtime(self) -> str:
        """The runtime this colorizer will try: `exact`, `torch` or `onnx` (`auto` resolved for its device)."""
        wanted = self.requested_runtime
        if wanted == "exact":
            return "exact"
        if self.device_type != "cpu" or self.precision.lowered:
            return "torch"  # the onnxruntime wheel is CPU-only and float32; on a GPU and in bfloat16, PyTorch
        if wanted in ("auto", "onnx"):
            from oldphoto.models.ddcolor.onnx import onnxruntime_missing

            return "onnx" if onnxruntime_missing() is None else "torch"
        return "torch"

    def runtime(self, input_size: int) -> str:
        """The runtime in effect at this input size (`planned_runtime()` until the first pass or `prepare`)."""
        engine = self._engines.get(input_size)
        return engine.name if engine is not None else self.planned_runtime()

    def needs_export(self, input_size: int) -> bool:
        """Whether the first pass at this input size first exports the network (seconds to a minute, once)."""
        if input_size in self._engines or self.planned_runtime() != "onnx":
            return False
        if self.source is None:
            return True
        from oldphoto.models.ddcolor.onnx import graph_key, is_cached

        try:
            return not is_cached(graph_key(self.source, input_size, self.cache_dir))
        except OSError:
            return True

    def prepare(self, input_size: int, on_progress: PrepareProgress | None = None, *, lens: bool = False) -> str:
        """Make the runtime for this input size ready (export, load, check) and return its name; with `lens`, the
        query lens too (on ONNX, its graph exported beside the segments the first time: needs the network)."""
        engine = self._engine(input_size, on_progress)
        if lens:
            self._lens_ready(engine, input_size)
        return engine.name

    def _lens_ready(self, engine: Engine, input_size: int) -> bool:
        from oldphoto.models.ddcolor.onnx import OnnxSegments

        if not isinstance(engine, OnnxSegments) or engine.lens_loaded:
            return True
        if input_size in self._lens_failed:
            return False
        from oldphoto.models.ddcolor.export import export_lens

        with self._prepare_lock:
            try:
                if not engine.has_lens:
                    export_lens(self.network, input_size, engine.folder)
                engine.load_lens()  # a damaged file fails here, not in the middle of a job's pass
            except Exception as exc:  # the colours do not depend on it: colorize without the lens
                log.warning("the query lens could not be exported at %d px (%s); colorizing without it", input_size, exc)
                self._lens_failed.add(input_size)
                return False
        return True

    def lens_module(self) -> nn.Module:
        """The query lens in PyTorch on this colorizer's device (segments.QueryLens)."""
        if self._lens_module is None:
            from oldphoto.models.ddcolor.lens import SUB_PIXEL
            from oldphoto.models.ddcolor.segments import QueryLens

            self._lens_module = QueryLens(self.network, SUB_PIXEL).to(self.device).eval()
        return self._lens_module

    def _engine(self, input_size: int, on_progress: PrepareProgress | None = None) -> Engine:
        """The engine for this size, made if needed; the least recently used ones past `max_engines` are let go
        (a pass still running on one keeps it alive until it ends)."""
        with self._prepare_lock:
            engine = self._engines.get(input_size)
            if engine is None:
                while len(self._engines) >= self.max_engines:
                    self._engines.popitem(last=False)  # before building: never two sizes' sessions at once
                engine = self._build_engine(input_size, on_progress)
                self._engines[input_size] = engine
            self._engines.move_to_end(input_size)
            return engine

    @property
    def engine_sizes(self) -> list[int]:
        """The input sizes whose engines are held in memory, least recently used first."""
        return list(self._engines)

    def _build_engine(self, input_size: int, on_progress: PrepareProgress | None) -> Engine:
        planned = self.planned_runtime()
        if self.requested_runtime == "onnx" and planned != "onnx":
            log.warning("ONNX runtime asked for, but not usable here (%s); running PyTorch", self._why_not_onnx())
        if planned == "exact":
            return self._exact
        if planned == "onnx":
            try:
                return self._onnx_engine(input_size, on_progress)
            except OldphotoError:
                raise  # a cancel during the export (from on_progress) is the job's, not a reason to fall back
            except Exception as exc:
                log.warning("DDColor on ONNX Runtime at %d px is not available (%s); running PyTorch instead", input_size, exc)
        try:
            return _TorchSegmentsEngine(self, input_size)
        except Exception as exc:  # a network not laid out as the official checkpoints
            log.warning("DDColor cannot be cut into blocks (%s); running its own forward", exc)
            return self._exact

    def _why_not_onnx(self) -> str:
        if self.device_type != "cpu":
            return f"the onnxruntime package runs on the CPU, this model is on {self.device}"
        from oldphoto.models.ddcolor.onnx import onnxruntime_missing

        return onnxruntime_missing() or "unknown"

    def _onnx_engine(self, input_size: int, on_progress: PrepareProgress | None) -> Engine:
        from oldphoto.models.ddcolor.onnx import OnnxSegments, graph_key, load_segments
        from oldphoto.models.runtimes import configured_threads

        threads = configured_threads()
        if self.source is None:  # no weights file to key a cache on: export for this object's lifetime
            from oldphoto.models.ddcolor.export import export_segments

            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="oldphoto-onnx-")
            folder = Path(self._scratch.name) / f"s{input_size}"
            folder.mkdir(exist_ok=True)
            return OnnxSegments(folder, export_segments(self.network, input_size, folder, on_progress), threads=threads)
        key = graph_key(self.source, input_size, self.cache_dir)
        return load_segments(
            lambda: self.network, key, threads=threads, max_bytes=self.cache_max_bytes, scope=self.cache_dir, on_progress=on_progress
        )

    # --- inference ---------------------------------------------------------------------------------------------

    def infer(self, gray_rgb: np.ndarray, on_block: BlockCallback | None = None) -> np.ndarray:
        """ab (B, 2, S, S) float32, for a gray RGB batch (B, 3, S, S) in 0..1 (float32; a CPU tensor is taken too).

        `on_block(index, total, name)` is called after each block; if it raises, the pass stops there and
        the exception goes up, leaving the model as it was.
        """
        after_block = None
        if on_block is not None:
            callback = on_block

            def after_block(index: int, total: int, name: str) -> None:
                callback(index, total, name)

        return self.infer_batch(gray_rgb, after_block)

    def infer_batch(self, gray_rgb: np.ndarray, after_block: AfterBlock | None = None) -> np.ndarray:
        """`infer` for a batch whose members may leave between blocks (the Batcher's entry).

        `after_block(index, total, name)` returns the rows of the current batch to go on with, or None for all;
        the result has one row per member still there at the end, in order. An empty selection stops the pass
        (the result then has no rows).
        """
        x = np.ascontiguousarray(gray_rgb, dtype=np.float32)
        engine = self._engine(x.shape[-1])
        with self._lock:
            try:
                return engine.run(x, self._synchronized(after_block))
            except _AllLeft:
                return np.zeros((0, 2, *x.shape[-2:]), np.float32)

    def infer_lens(self, gray_rgb: np.ndarray, on_block: BlockCallback | None = None) -> tuple[np.ndarray, QueryResponses | None]:
        """`infer`, with the query lens's responses beside ab (None where this runtime cannot give them)."""
        after_block = None
        if on_block is not None:
            callback = on_block

            def after_block(index: int, total: int, name: str) -> None:
                callback(index, total, name)

        return self.infer_batch_lens(gray_rgb, after_block)

    def infer_batch_lens(self, gray_rgb: np.ndarray, after_block: AfterBlock | None = None) -> tuple[np.ndarray, QueryResponses | None]:
        """`infer_batch`, with the query lens's responses for the rows still there at the end (lens.py)."""
        from oldphoto.models.ddcolor.lens import QueryResponses

        x = np.ascontiguousarray(gray_rgb, dtype=np.float32)
        engine = self._engine(x.shape[-1])
        if not self._lens_ready(engine, x.shape[-1]):
            return self.infer_batch(x, after_block), None
        with self._lock:
            try:
                ab, responses, push = engine.run_lens(x, self._synchronized(after_block))
            except _AllLeft:
                return np.zeros((0, 2, *x.shape[-2:]), np.float32), None
            except _NoLens as exc:
                log.info("no query lens on this network (%s)", exc)
                return engine.run(x, self._synchronized(after_block)), None
        return ab, QueryResponses(responses, push)

    def _synchronized(self, after_block: AfterBlock | None) -> AfterBlock | None:
        """A block callback that says when no row is left, and on a GPU waits for the block so progress tells the truth."""
        if after_block is None:
            return None
        cuda = self.device_type == "cuda"

        def wrapped(index: int, total: int, name: str) -> Sequence[int] | None:
            if cuda:
                import torch

                torch.cuda.synchronize(self.device)
            rows = after_block(index, total, name)
            if rows is not None and len(rows) == 0:
                raise _AllLeft()
            return rows

        return wrapped

    def _forget_features(self) -> None:
        """Drop the encoder features the network's own hooks hold, so an idle cached model holds no activations."""
        for hook in getattr(getattr(self._network, "encoder", None), "hooks", ()):
            hook.feature = None

    def out_of_memory(self) -> OutOfMemory:
        """What a PyTorch engine raises when the device runs out of memory (its cache emptied first on a GPU)."""
        if self.device_type == "cuda":
            import torch

            torch.cuda.empty_cache()
        message = f"Not enough memory on {self.device_name} to colorize at this input size; use a smaller input size or the CPU."
        return OutOfMemory(message)


class _AllLeft(Exception):
    """Every member of a batch left: the pass stops."""


class _NoLens(Exception):
    """This network is not laid out for the query lens (the exact engine of an unofficial layout)."""


class _ExactEngine:
    """The network's own forward; progress from hooks. A batch shrinks only at the end (hooks cannot drop rows)."""

    name = "exact"

    def __init__(self, colorizer: Colorizer) -> None:
        self.colorizer = colorizer

    @property
    def block_names(self) -> list[str]:
        from oldphoto.models.ddcolor.progress import network_blocks

        return [name for name, _ in network_blocks(self.colorizer.network)]

    def run(self, x: np.ndarray, after_block: AfterBlock | None) -> np.ndarray:
        return self._run(x, after_block, None)[0]

    def run_lens(self, x: np.ndarray, after_block: AfterBlock | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from oldphoto.models.ddcolor.segments import UnsupportedLayout, query_push

        try:
            lens = self.colorizer.lens_module()
        except UnsupportedLayout as exc:
            raise _NoLens(str(exc)) from None
        ab, responses = self._run(x, after_block, lens)
        assert responses is not None
        return ab, responses, query_push(self.colorizer.network).cpu().numpy()

    def _run(self, x: np.ndarray, after_block: AfterBlock | None, lens: nn.Module | None) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        from oldphoto.models.ddcolor.progress import block_hooks

        colorizer = self.colorizer
        rows = list(range(x.shape[0]))

        def on_block(index: int, total: int, name: str) -> None:
            nonlocal rows
            if after_block is not None:
                kept = after_block(index, total, name)
                if kept is not None:
                    rows = [rows[i] for i in kept]

        network = colorizer.network
        seen: dict[str, torch.Tensor] = {}
        taps = []
        if lens is not None:
            # The values the lens reads, from the network's own modules: the last colour-decoder layer's queries
            # and the decoder's third upsampling block (`out2`).
            def keep(name: str) -> Callable[..., None]:
                def hook(_module: object, _args: object, output: torch.Tensor) -> None:
                    seen[name] = output

                return hook

            any_network: Any = network
            taps.append(any_network.decoder.color_decoder.transformer_ffn_layers[-1].register_forward_hook(keep("queries")))
            taps.append(any_network.decoder.layers[2].register_forward_hook(keep("out2")))
        try:
            with torch.inference_mode(), block_hooks(network, on_block if after_block is not None else None):
                try:
                    ab = network(torch.from_numpy(x).to(colorizer.device))
                    responses = lens(seen["queries"], seen["out2"]) if lens is not None else None
                except torch.OutOfMemoryError:
                    raise colorizer.out_of_memory() from None
                finally:
                    colorizer._forget_features()
                    seen.clear()
        finally:
            for tap in taps:
                tap.remove()
        if len(rows) != x.shape[0]:
            keep_rows = torch.as_tensor(rows, dtype=torch.long, device=ab.device)
            ab = ab.index_select(0, keep_rows)
            responses = responses.index_select(0, keep_rows) if responses is not None else None
        return ab.float().cpu().numpy(), (responses.float().cpu().numpy() if responses is not None else None)


class _TorchSegmentsEngine:
    """The 22 segments in eager PyTorch, with the folded tail: float32, or the colorizer's lower precision (fast:
    precision.py) on the blocks it names, with their weights stored in it."""

    name = "torch"

    def __init__(self, colorizer: Colorizer, input_size: int) -> None:
        from oldphoto.models.ddcolor.precision import lower_segments
        from oldphoto.models.ddcolor.segments import build_segments

        self.colorizer = colorizer
        self.device = colorizer.device
        self.segments = build_segments(colorizer.network, input_size, fold_tail=True)
        for segment in self.segments:
            segment.module.to(self.device)  # the position buffers made at the cut
        self.precision = colorizer.precision
        if self.precision.lowered:
            colorizer._forget_features()  # the lowered blocks are copies, and a copy cannot take them along
        self.low_segments = lower_segments(self.segments, self.precision)
        if self.precision.dtype == "float16" and not self._half_is_close(input_size):
            self.precision = self.precision.fallback("half_probe")
        if not self.precision.lowered:
            self.low_segments = self.segments  # the float32 ones: no copies held

    @property
    def block_names(self) -> list[str]:
        return [segment.name for segment in self.segments]

    def _half_is_close(self, input_size: int) -> bool:
        """UNTESTED on a GPU (none here; benchmarks/gpu_check.py measures it): float16 only if, on a probe input,
        ab stays within HALF_TOLERANCE_AB of float32 (float16 overflows where bfloat16 does not)."""
        from oldphoto.models.ddcolor.export import probe_input
        from oldphoto.models.ddcolor.segments import run_segments_torch

        try:
            probe = probe_input(input_size).to(self.device)
            full = run_segments_torch(self.segments, probe)
            half = self._run(probe, None)
            difference = float((full - half).abs().max())
        except Exception as exc:
            log.info("float16 check failed on %s (%s); running float32", self.device, exc)
            return False
        log.info("float16 on %s: largest ab difference %.3g on the probe (limit %s)", self.device, difference, HALF_TOLERANCE_AB)
        return difference <= HALF_TOLERANCE_AB  # False for NaN too

    def run(self, x: np.ndarray, after_block: AfterBlock | None) -> np.ndarray:
        import torch

        try:
            ab = self._run(torch.from_numpy(x).to(self.device), after_block)
        except torch.OutOfMemoryError:
            raise self.colorizer.out_of_memory() from None
        return ab.float().cpu().numpy()

    def run_lens(self, x: np.ndarray, after_block: AfterBlock | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        from oldphoto.models.ddcolor.lens import LENS_VALUE
        from oldphoto.models.ddcolor.precision import torch_dtype
        from oldphoto.models.ddcolor.segments import Segment, lens_inputs, query_push, run_segments_torch_lens

        lens = Segment("lens", self.colorizer.lens_module(), lens_inputs(self.segments), (LENS_VALUE,))
        plan = self.precision
        try:
            tensor = torch.from_numpy(x).to(self.device)
            if plan.lowered:
                ab, responses = run_segments_torch_lens(
                    self.low_segments, lens, tensor, after_block, autocast=torch_dtype(plan.dtype), low_blocks=plan.runs_low
                )
            else:
                ab, responses = run_segments_torch_lens(self.segments, lens, tensor, after_block)
        except torch.OutOfMemoryError:
            raise self.colorizer.out_of_memory() from None
        return ab.float().cpu().numpy(), responses.float().cpu().numpy(), query_push(self.colorizer.network).cpu().numpy()

    def _run(self, x: torch.Tensor, after_block: AfterBlock | None) -> torch.Tensor:
        from oldphoto.models.ddcolor.precision import torch_dtype
        from oldphoto.models.ddcolor.segments import run_segments_torch

        plan = self.precision
        if not plan.lowered:
            return run_segments_torch(self.segments, x, after_block)
        # The plan's blocks under autocast with their lowered weights; the rest (the folded tail, a sum over 4096
        # channels, among them) in float32.
        return run_segments_torch(self.low_segments, x, after_block, autocast=torch_dtype(plan.dtype), low_blocks=plan.runs_low)

