"""DDColor on ONNX Runtime: the network exported once as 22 segments (one per reported block), cached on disk.

Why: on the CPU, ONNX Runtime runs this network 1.4-2.1x as fast as eager PyTorch (docs/benchmarks.md).
Why segments: a single exported graph runs in one call, with no place to report a block or to stop on a cancel;
run one after another, the segments keep both (`on_block` between segments, where the caller's cancel check runs).

The cache, under the models dir (the cache dir, `OLDPHOTO_MODELS_DIR`): beside the weights of a known model (its
folder there), in the models dir's own `.oldphoto-runtime` for weights elsewhere (an operator's path) or in a
read-only folder; beside the weights when no models dir is given (a direct `load_colorizer` call):

    <models dir>/<model>/.oldphoto-runtime/    or    <models dir>/.oldphoto-runtime/
      <weights file>.sha256.json            size, mtime and sha256 of the weights (re-hashed only when size or mtime change)
      <weights file>-<sha256[:16]>/onnx-v<FORMAT>-s<input size>/
        manifest.json                       segments, their inputs and outputs, versions; written last
        01-encoder.stem.onnx ... 22-refine_net.onnx

Graphs are keyed by the weights' content and the input size (shapes are fixed at export; the batch is dynamic, so
the Batcher's batches use the same graphs). Weights whose content changes get a new folder; the old one is removed.
The whole cache is held to a size in bytes (`OLDPHOTO_RUNTIME_CACHE_MB`): after each export, and at each load, the
graphs used least recently are removed until it fits (`evict`); graphs being loaded are never removed under a
reader (a shared lock per folder), and the ones just used stay whatever their size.
An export is checked against the PyTorch network on a probe input before its manifest is written; a graph that does
not agree is never used. Several worker processes that want the same graph take turns on a lock file: one exports,
the others then load its result.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from oldphoto.models.ddcolor.values import INPUT, OUTPUT, StepSpec, batch_axis, last_uses

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

# Bump when the cut (segments.py) or the export changes: older folders are then ignored and rebuilt.
FORMAT = 2
OPSET = 17
CACHE_FOLDER = ".oldphoto-runtime"
# Largest |ab| difference accepted between the exported graphs and PyTorch on the probe (ab spans about +-110;
# seen: 3e-4). One RGB level is about 0.3 in ab, so 0.05 keeps outputs within a level with a wide margin.
AGREEMENT_AB = 0.05

# (fraction done, segment name) while exporting
ExportProgress = Callable[[float, str], None]
# Builds the PyTorch network, called only when the graphs must be exported (a cached graph needs no PyTorch).
NetworkSource = Callable[[], "nn.Module"]
# After each block: (index, total, name) -> rows of the current batch to keep (None: all)
AfterBlock = Callable[[int, int, str], Sequence[int] | None]


class ExportFailed(Exception):
    """The network could not be exported, or the exported graphs disagree with it."""


def onnxruntime_missing() -> str | None:
    """Why ONNX Runtime cannot be used here, or None when it can."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    return None


# --- the cache on disk ------------------------------------------------------------------------------------------


def weights_sha256(weights: Path, record_dir: Path) -> str:
    """The weights' sha256, remembered beside the cache with their size and mtime so it is computed once."""
    stat = weights.stat()
    record = record_dir / f"{weights.name}.sha256.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        kept = json.loads(record.read_text())
        if kept["size"] == stat.st_size and kept["mtime_ns"] == stat.st_mtime_ns:
            return str(kept["sha256"])
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    with contextlib.suppress(OSError):
        record_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(record, json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}))
    return sha


def cache_root(weights: Path, models_dir: Path | None) -> Path:
    """Where a weights file's graphs go: `.oldphoto-runtime` beside the weights when they lie in the models dir (the
    cache dir: a known model's own folder) or no models dir is given; under the models dir for weights elsewhere (an
    operator's path) or in a read-only folder; else under the system's temporary folder."""
    models = Path(models_dir).expanduser() if models_dir is not None else None
    beside = weights.parent / CACHE_FOLDER
    own_folder = models is None or weights.resolve().is_relative_to(models.resolve())
    if own_folder and (_writable(beside) or (not beside.exists() and _writable(weights.parent))):
        return beside
    if models is not None:
        inside = models / CACHE_FOLDER
        if _writable(inside) or (not inside.exists() and (_writable(models) or not models.exists())):
            return inside
    return Path(tempfile.gettempdir()) / "oldphoto" / CACHE_FOLDER  # lost at reboot, but better than exporting each time


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


@dataclass(frozen=True)
class GraphKey:
    weights: Path
    sha256: str
    input_size: int
    root: Path

    @property
    def weights_folder(self) -> Path:
        return self.root / f"{self.weights.name}-{self.sha256[:16]}"

    @property
    def folder(self) -> Path:
        return self.weights_folder / f"onnx-v{FORMAT}-s{self.input_size}"


def graph_key(weights: Path, input_size: int, fallback: Path | None) -> GraphKey:
    root = cache_root(weights, fallback)
    return GraphKey(weights.resolve(), weights_sha256(weights, root), input_size, root)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT or not all((folder / s["file"]).is_file() for s in manifest.get("segments", [])):
        return None
    return manifest


def is_cached(key: GraphKey) -> bool:
    return read_manifest(key.folder) is not None


# --- the bound on the cache's size -----------------------------------------------------------------------------

# Touched at each load of a folder's graphs: how recently it was used (the manifest's own time says when it was made).
USED_STAMP = "last-used"


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _graph_folders(scope: Path) -> list[Path]:
    """Every exported graph folder (`.oldphoto-runtime/<weights>-<sha>/onnx-v*-s*`) in `scope`: the models dir's own
    cache and each model folder's, or a single cache root."""
    patterns = [f"{CACHE_FOLDER}/*/onnx-v*-s*", f"*/{CACHE_FOLDER}/*/onnx-v*-s*"] if scope.name != CACHE_FOLDER else ["*/onnx-v*-s*"]
    return [f for pattern in patterns for f in scope.glob(pattern) if f.is_dir()]


def _last_used(folder: Path) -> float:
    for name in (USED_STAMP, "manifest.json"):
        with contextlib.suppress(OSError):
            return (folder / name).stat().st_mtime
    return 0.0


def mark_used(folder: Path) -> None:
    with contextlib.suppress(OSError):
        (folder / USED_STAMP).touch()


def evict(scope: Path, max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used graph folders in `scope` (the models dir, or one cache root) until the rest fit
    in `max_bytes`; never `keep`, never a folder a process is exporting or loading (its lock is held). Returns what
    was removed."""
    folders = sorted(_graph_folders(scope), key=_last_used)
    sizes = {folder: folder_bytes(folder) for folder in folders}
    total = sum(sizes.values())
    removed = []
    for folder in folders:
        if total <= max_bytes:
            break
        if keep is not None and folder == keep:
            continue
        with _try_lock(folder.parent / f"{folder.name}.lock") as locked:
            if not locked:
                continue  # in use by another process: the next eviction will see it again
            shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        removed.append(folder)
        log.info("removed the ONNX graphs %s (%.0f MB): the cache is held to %.0f MB", folder, sizes[folder] / 2**20, max_bytes / 2**20)
    return removed


def ensure_exported(network: NetworkSource, key: GraphKey, on_progress: ExportProgress | None = None) -> dict[str, Any]:
    """The manifest of the cached graphs for this key, exporting them first (from `network()`) if they are not there."""
    manifest = read_manifest(key.folder)
    if manifest is not None:
        return manifest
    key.weights_folder.mkdir(parents=True, exist_ok=True)
    failed = key.weights_folder / f"{key.folder.name}.failed"
    with _file_lock(key.weights_folder / f"{key.folder.name}.lock"):
        manifest = read_manifest(key.folder)  # another process may have made it while this one waited
        if manifest is not None:
            return manifest
        reason = _earlier_failure(failed)
        if reason is not None:  # this export failed before with these versions: do not spend the time again
            raise ExportFailed(f"it failed before ({reason}); delete {failed} to try again")
        started = time.monotonic()
        scratch = Path(tempfile.mkdtemp(prefix=f".{key.folder.name}.", dir=key.weights_folder))
        try:
            try:
                manifest = _export(network, key.input_size, scratch, on_progress)
            except ExportFailed as exc:
                _write_atomic(failed, json.dumps({"versions": _versions(), "reason": str(exc)}))
                raise
            manifest["weights"] = {"name": key.weights.name, "sha256": key.sha256}
            _write_atomic(scratch / "manifest.json", json.dumps(manifest, indent=1))
            scratch.chmod(0o755)  # mkdtemp makes it private; other worker users read it too
            shutil.rmtree(key.folder, ignore_errors=True)
            scratch.rename(key.folder)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("exported DDColor to ONNX at %d px for %s in %.1f s", key.input_size, key.weights.name, time.monotonic() - started)
    _remove_stale(key)
    return manifest


def _export(network: NetworkSource, input_size: int, folder: Path, on_progress: ExportProgress | None) -> dict[str, Any]:
    from oldphoto.models.ddcolor.export import export_segments

    return export_segments(network(), input_size, folder, on_progress)


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    return {"format": str(FORMAT), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _earlier_failure(marker: Path) -> str | None:
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return str(record.get("reason")) if record.get("versions") == _versions() else None


def _remove_stale(key: GraphKey) -> None:
    """Folders for earlier contents of the same weights file (another sha256) are dead weight: remove them."""
    prefix = f"{key.weights.name}-"
    for folder in key.root.glob(f"{prefix}*"):
        if folder.is_dir() and folder != key.weights_folder and len(folder.name) == len(prefix) + 16:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """The exclusive lock if no one holds it now (True), else nothing (False); never waits."""
    import fcntl

    try:
        handle = path.open("a")
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_segments(
    network: NetworkSource,
    key: GraphKey,
    *,
    threads: int,
    max_bytes: int | None = None,
    scope: Path | None = None,
    on_progress: ExportProgress | None = None,
) -> OnnxSegments:
    """The sessions of the cached graphs for this key (exported first if missing), with the graphs in `scope` (the
    models dir; the key's cache root if None) then held to `max_bytes`. The folder is read under a shared lock, so an
    eviction elsewhere cannot remove it mid-load."""
    for _ in range(3):  # evicted between the export and the load: export again
        manifest = ensure_exported(network, key, on_progress)
        # Held (shared) until the last session is built, on the thread that builds them.
        held = contextlib.ExitStack()
        held.enter_context(_file_lock(key.weights_folder / f"{key.folder.name}.lock", shared=True))
        if read_manifest(key.folder) is None:
            held.close()
            continue
        try:
            segments = OnnxSegments(key.folder, manifest, threads=threads, keep_optimized=True, on_built=held.close)
        except BaseException:
            held.close()
            raise
        mark_used(key.folder)
        if max_bytes is not None:
            evict(scope or key.root, max_bytes, keep=key.folder)
        return segments
    raise ExportFailed(f"the graphs at {key.folder} were removed each time they were made")


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    partial.replace(path)


# --- running ----------------------------------------------------------------------------------------------------

_ALLOCATOR_LOCK = threading.Lock()
# Sessions built at once. Measured (tiny, 22 sessions from saved ORT-format graphs, 2 cores, idle): one builder
# 0.50-0.56 s, two 0.33-0.41 s; a build holds the GIL much of the time, so more would gain little.
BUILDERS = 2
_shared_allocator = False


def optimized_folder_name(ort_version: str) -> str:
    """Where a graph folder keeps its sessions' optimized graphs: they hold this CPU's kernels' layouts (NCHWc blocks
    sized for its vector width), so another CPU or ONNX Runtime version (a shared models dir) keeps its own."""
    return f"ort-{ort_version}-{cpu_fingerprint()}"


@functools.cache
def cpu_fingerprint() -> str:
    """A short hash of this CPU's model and instruction-set flags."""
    described = platform.machine() + platform.processor()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        described += "".join(sorted({line for line in lines if line.startswith(("flags", "model name", "Features"))}))
    return hashlib.sha256(described.encode()).hexdigest()[:12]


def _use_shared_allocator(ort: Any) -> bool:
    """One memory arena for every session of the process (22 per graph): memory of one pass, not of 22 arenas."""
    global _shared_allocator
    with _ALLOCATOR_LOCK:
        if not _shared_allocator:
            try:
                info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(info, ort.OrtArenaCfg({}))
                _shared_allocator = True
            except Exception as exc:  # an older onnxruntime: each session keeps its own arena
                log.info("onnxruntime: no shared allocator (%s)", exc)
                return False
        return True


class OnnxSegments:
    """The exported segments as ONNX Runtime sessions on the CPU, run one after another."""

    name = "onnx"

    def __init__(
        self,
        folder: Path,
        manifest: dict[str, Any],
        *,
        threads: int,
        keep_optimized: bool = False,
        on_built: Callable[[], None] | None = None,
    ) -> None:
        """Sessions are built in order by `BUILDERS` threads of their own, and a pass waits for each segment's session
        only when it gets there: the first pass runs while the later sessions are still being built (measured: 40 % less
        from start to the first result than building all, then running). `keep_optimized` saves each session's
        optimized graph (ORT format, per CPU and version) beside the graphs and loads it next time: 25 % less to build.
        `on_built` is called once every session is built or one failed (the loader holds the folder until then)."""
        import onnxruntime as ort

        self._ort = ort
        self.folder = folder
        self.threads = max(1, threads)
        self.input_size = int(manifest["input_size"])
        self.segments = [StepSpec(entry["name"], tuple(entry["inputs"]), tuple(entry["outputs"])) for entry in manifest["segments"]]
        self._files = [str(entry["file"]) for entry in manifest["segments"]]
        self._optimized = folder / optimized_folder_name(ort.__version__) if keep_optimized else None
        self._sessions: list[Future[Any]] = [Future() for _ in self._files]
        self._drops = last_uses(self.segments)
        # Give the arena's free memory back at the end of a pass, so an idle worker does not hold a pass's peak.
        self._last_run = ort.RunOptions()
        with contextlib.suppress(Exception):
            self._last_run.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._on_built = on_built
        self._next = iter(list(enumerate(zip(self._files, self._sessions, strict=True))))
        self._next_lock = threading.Lock()
        self._builders_left = BUILDERS
        self._lens: tuple[Any, dict[str, Any]] | None = None  # its session and index, once a pass wanted it
        self._lens_lock = threading.Lock()
        # Not daemons: a process that ends while sessions are being built waits for them (ONNX Runtime aborts the
        # process when the interpreter goes away under a session being built).
        for index in range(BUILDERS):
            threading.Thread(target=self._build_all, name=f"onnx-sessions-{index}").start()

    @property
    def sessions(self) -> list[Any]:
        """Every session, once built (waits for the ones still being built)."""
        return [future.result() for future in self._sessions]

    def _build_all(self) -> None:
        """One builder: takes the next segment in order until none is left; the last builder to end calls on_built."""
        try:
            while (taken := self._take_next()) is not None:
                index, (file, future) = taken
                try:
                    session = self._session(file)
                except BaseException as exc:
                    self._fail_from(index, exc)
                    return
                with self._next_lock:
                    if not future.done():  # failed by the other builder meanwhile
                        future.set_result(session)
        finally:
            with self._next_lock:
                self._builders_left -= 1
                last = self._builders_left == 0
            if last and self._on_built is not None:
                self._on_built()

    def _take_next(self) -> tuple[int, tuple[str, Future[Any]]] | None:
        with self._next_lock:
            return next(self._next, None)

    def _fail_from(self, index: int, exc: BaseException) -> None:
        """This segment and every later one fail; an earlier one still being built is finished (a pass runs up to
        the broken segment, as when they were built one by one)."""
        with self._next_lock:
            self._next = iter(())
            for rest in self._sessions[index:]:
                if not rest.done():
                    rest.set_exception(exc)

    def _session(self, file: str) -> Any:
        """From the saved optimized graph when there is one; else from the exported graph (saving its optimized form)."""
        ort = self._ort
        options = self._options()
        if self._optimized is None:
            return ort.InferenceSession(str(self.folder / file), options, providers=["CPUExecutionProvider"])
        saved = self._optimized / f"{Path(file).stem}.ort"
        if saved.is_file():
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # done when it was saved
            options.add_session_config_entry("session.load_model_format", "ORT")
            with contextlib.suppress(Exception):  # unreadable (cut short, another version): build from the graph
                return ort.InferenceSession(str(saved), options, providers=["CPUExecutionProvider"])
            options = self._options()
        partial = saved.with_name(f".{saved.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            self._optimized.mkdir(exist_ok=True)
        except OSError:  # a read-only cache: run without saving
            return ort.InferenceSession(str(self.folder / file), options, providers=["CPUExecutionProvider"])
        options.optimized_model_filepath = str(partial)
        options.add_session_config_entry("session.save_model_format", "ORT")
        session = ort.InferenceSession(str(self.folder / file), options, providers=["CPUExecutionProvider"])
        with contextlib.suppress(OSError):
            partial.replace(saved)  # whole or not at all, for the processes that load it next
        return session

    def _options(self) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Measured: with spinning, the idle workers of the previous segment's session keep a core busy while the
        # next segment runs (22 sessions one after another): 1.3-1.5x slower on two cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if _use_shared_allocator(ort):
            options.add_session_config_entry("session.use_env_allocators", "1")
        return options

    @property
    def block_names(self) -> list[str]:
        return [segment.name for segment in self.segments]

    # --- the query lens (lens.py): an extra graph beside the segments, loaded at its first use -------------------

    @property
    def has_lens(self) -> bool:
        """Whether a whole lens graph lies beside the segments (loaded or not)."""
        from oldphoto.models.ddcolor.lens import read_index

        return self._lens is not None or read_index(self.folder) is not None

    @property
    def lens_loaded(self) -> bool:
        return self._lens is not None

    def load_lens(self) -> None:
        self._lens_session()

    def _lens_session(self) -> tuple[Any, dict[str, Any]]:
        from oldphoto.models.ddcolor.lens import LENS_FILE, read_index

        with self._lens_lock:
            if self._lens is None:
                index = read_index(self.folder)
                if index is None:
                    raise FileNotFoundError(f"no query lens in {self.folder}")
                session = self._ort.InferenceSession(str(self.folder / LENS_FILE), self._options(), providers=["CPUExecutionProvider"])
                self._lens = (session, index)
            return self._lens

    def run(self, x: np.ndarray, after_block: AfterBlock | None = None) -> np.ndarray:
        return self._run(x, after_block, lens=False)[0]

    def run_lens(self, x: np.ndarray, after_block: AfterBlock | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ab, the lens's responses (B, Q, h, w) and the queries' push (2, Q) of one pass (the lens run unreported)."""
        ab, responses, push = self._run(x, after_block, lens=True)
        assert responses is not None and push is not None
        return ab, responses, push

    def _run(self, x: np.ndarray, after_block: AfterBlock | None, lens: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        ort = self._ort
        lens_session, lens_index = self._lens_session() if lens else (None, {})
        lens_inputs = [str(name) for name in lens_index.get("inputs", [])]
        lens_output = str(lens_index.get("output", ""))
        feed = np.ascontiguousarray(x, dtype=np.float32)
        # ONNX Runtime hands outputs back in vectors that own them: each value keeps its vector alive while used.
        values: dict[str, Any] = {INPUT: ort.OrtValue.ortvalue_from_numpy(feed)}
        owners: dict[str, Any] = {INPUT: feed}
        total = len(self.segments)
        try:
            for index, (segment, building, drop) in enumerate(zip(self.segments, self._sessions, self._drops, strict=True), 1):
                session = building.result()
                run_options = self._last_run if index == total else None
                results = session.run_with_ort_values(list(segment.outputs), {name: values[name] for name in segment.inputs}, run_options)
                for position, name in enumerate(segment.outputs):
                    values[name], owners[name] = results[position], results
                if lens_session is not None and lens_output not in values and all(name in values for name in lens_inputs):
                    # Before the drops below free its inputs; its output then travels (and loses rows) with the batch.
                    seen = lens_session.run_with_ort_values([lens_output], {name: values[name] for name in lens_inputs})
                    values[lens_output], owners[lens_output] = seen[0], seen
                for name in drop:
                    values.pop(name, None)
                    owners.pop(name, None)
                if after_block is not None:
                    rows = after_block(index, total, segment.name)
                    if rows is not None:
                        values, owners = self._select(values, rows)
            ab = np.array(values[OUTPUT].numpy(), dtype=np.float32, copy=True)
            if lens_session is None:
                return ab, None, None
            responses = np.array(values[lens_output].numpy(), dtype=np.float32, copy=True)
            return ab, responses, np.asarray(lens_index["push"], dtype=np.float32)
        finally:
            values.clear()
            owners.clear()

    def _select(self, values: dict[str, Any], rows: Sequence[int]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Keep only these rows of the batch in every live value (a member of a batch left)."""
        kept: dict[str, Any] = {}
        owners: dict[str, Any] = {}
        index = np.asarray(rows, dtype=np.int64)
        for name, value in values.items():
            array = np.ascontiguousarray(np.take(value.numpy(), index, axis=batch_axis(name)))
            kept[name], owners[name] = self._ort.OrtValue.ortvalue_from_numpy(array), array
        return kept, owners
