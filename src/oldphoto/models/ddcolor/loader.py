"""Reading DDColor checkpoints in every official form and building the network with spandrel.

Forms: the authors' training output (`.pth` holding `{"params": state_dict}`), a raw state dict (`.pth`, `.pt`,
ModelScope's `pytorch_model.pt`), `.safetensors` and `.bin` (a Hugging Face repo saved by PyTorchModelHubMixin),
and such a repo's folder with its `config.json`. Pickles are read with `weights_only=True`: a checkpoint is data,
never code.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oldphoto.errors import ModelInvalid, ModelMissing
from oldphoto.models.cache import MODEL_CACHE
from oldphoto.models.ddcolor.colorizer import Colorizer
from oldphoto.models.registry import CHECKPOINT_SUFFIXES, HF_WEIGHT_FILES

if TYPE_CHECKING:
    import torch

    StateDict = dict[str, torch.Tensor]

# Inside a folder, the weight files looked for, in this order.
FOLDER_WEIGHT_FILES: tuple[str, ...] = (*HF_WEIGHT_FILES, "pytorch_model.pt")
# The authors' model input for all official checkpoints; spandrel cannot read it from the weights.
OFFICIAL_INPUT_SIZE = 512


def checkpoint_file(path: Path) -> Path:
    """The weights file a path stands for: the file itself, or the weights inside a Hugging Face folder."""
    if path.is_dir():
        found = next((path / name for name in FOLDER_WEIGHT_FILES if (path / name).is_file()), None)
        if found is None:
            raise ModelMissing(f"The folder {path} holds no weights: expected one of {', '.join(FOLDER_WEIGHT_FILES)}.")
        return found
    if not path.is_file():
        raise ModelMissing(f"There is no checkpoint at {path}.")
    return path


def read_state_dict(path: Path) -> StateDict:
    """The network's state dict from a checkpoint in any official form."""
    weights = checkpoint_file(path)
    suffix = weights.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ModelInvalid(f"{weights.name} is not a checkpoint: expected one of {', '.join(CHECKPOINT_SUFFIXES)}.")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(weights), device="cpu")
        else:
            raw = _torch_load(weights)
    except Exception as exc:  # torch and safetensors raise many kinds for a truncated or foreign file
        raise ModelInvalid(f"{weights} could not be read as a checkpoint ({_reason(exc)}).") from None
    return _unwrap(raw, weights)


def _torch_load(weights: Path) -> Any:
    """Memory-mapped where the file allows it: the tensors are copied once, into the network, not twice."""
    import torch

    try:
        return torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(weights, map_location="cpu", weights_only=True)  # the pre-1.6 (not zip) format


def _unwrap(raw: Any, weights: Path) -> StateDict:
    import torch
    from spandrel import canonicalize_state_dict

    if not isinstance(raw, Mapping):
        raise ModelInvalid(f"{weights} holds a {type(raw).__name__}, not a state dict.")
    # The authors' loader (and ModelScope's) take `params` when it is there, even beside `params_ema`;
    # spandrel would prefer `params_ema`, so `params` is taken first here.
    state = raw["params"] if isinstance(raw.get("params"), Mapping) else canonicalize_state_dict(dict(raw))
    tensors: StateDict = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            # ModelScope strips these wrappers key by key before loading; so does this.
            tensors[key.removeprefix("module.").removeprefix("model.")] = value
    if not tensors:
        raise ModelInvalid(f"{weights} holds no tensors.")
    return tensors


def build_network(state_dict: StateDict, source: str = "the checkpoint") -> torch.nn.Module:
    """The DDColor network for a state dict, in eval mode on the CPU."""
    from spandrel import ModelLoader, UnsupportedModelError

    from oldphoto.models.runtimes import apply_torch_threads

    apply_torch_threads()

    try:
        descriptor = ModelLoader(registry=_ddcolor_registry()).load_from_state_dict(state_dict)
    except UnsupportedModelError:
        raise ModelInvalid(f"{source} is not a DDColor checkpoint (its keys do not match the DDColor network).") from None
    except (RuntimeError, KeyError, ValueError, IndexError) as exc:
        raise ModelInvalid(f"{source} does not fit the DDColor network ({_reason(exc)}).") from None
    network = descriptor.model
    if getattr(network, "num_output_channels", 2) != 2:
        raise ModelInvalid(f"{source} predicts {network.num_output_channels} channels; DDColor colorization predicts 2 (a and b).")
    # Only spandrel's own call helper reads this (it is not used here); set it to the truth for the record.
    network.input_size = (OFFICIAL_INPUT_SIZE, OFFICIAL_INPUT_SIZE)
    return network.eval()


def cache_key(weights: Path, device: torch.device | str) -> tuple[str, str, int, str]:
    """A checkpoint replaced on disk (new mtime) is a new model; the same file on another device too."""
    resolved = weights.resolve()
    return ("ddcolor", str(resolved), resolved.stat().st_mtime_ns, str(device))


def is_loaded(path: Path, device: torch.device | str) -> bool:
    try:
        return cache_key(checkpoint_file(path), device) in MODEL_CACHE
    except (ModelMissing, OSError):
        return False


def load_colorizer(
    path: Path,
    device: torch.device | str,
    runtime: str | None = None,
    *,
    cache_dir: Path | None = None,
    cache_max_bytes: int | None = None,
    precision: str | None = None,
) -> tuple[Colorizer, bool]:
    """The colorizer for a checkpoint on a device, and whether it came from memory (an earlier run's load).

    `runtime` (`auto`, `torch`, `onnx`, or `exact`; see colorizer.py) switches the loaded model to that runtime;
    None leaves it as it is (`exact`, the network's own forward, for a fresh load). `cache_dir` is where exported
    graphs go (the models dir), `cache_max_bytes` the size they are held to there (least recently used removed first).
    `precision` (`faithful` or `fast`; precision.py decides what fast means for this model on this device) sets the
    number format too; None leaves it as it is (float32 for a fresh load).
    """
    weights = checkpoint_file(path)

    def network() -> torch.nn.Module:
        return build_network(read_state_dict(weights), source=str(weights))

    def load() -> Colorizer:
        native = _config_input_size(weights)
        colorizer = Colorizer(
            None,
            device,
            load_network=network,
            runtime=runtime or "exact",
            native_input_size=native,
            source=weights,
            cache_dir=cache_dir,
            cache_max_bytes=cache_max_bytes,
        )
        # On the ONNX runtime a process that finds the graphs on disk runs them without the network (nor PyTorch); a
        # missing graph is exported from it when first needed. Elsewhere it is built now, so a checkpoint that is
        # not DDColor fails the load, not a later pass.
        if colorizer.planned_runtime() != "onnx":
            colorizer.network  # noqa: B018
        return colorizer

    colorizer, from_memory = MODEL_CACHE.get_or_load(cache_key(weights, device), load)
    if precision is not None:
        from oldphoto.models.ddcolor.precision import encoder_name, plan

        # Faithful needs no look at the network: a cold start on cached graphs stays without PyTorch.
        encoder = encoder_name(colorizer.network) if precision == "fast" else None
        chosen = plan(precision, colorizer.device_type, encoder)
        runtime = runtime or colorizer.requested_runtime
        colorizer.use_runtime(runtime, cache_dir=cache_dir, cache_max_bytes=cache_max_bytes, precision=chosen)
    elif runtime is not None:
        colorizer.use_runtime(runtime, cache_dir=cache_dir, cache_max_bytes=cache_max_bytes)
    return colorizer, from_memory


def _config_input_size(weights: Path) -> int:
    """The input size a Hugging Face folder's config.json gives (`input_size: [512, 512]`), else the official 512."""
    config = weights.parent / "config.json"
    try:
        size = json.loads(config.read_text()).get("input_size")
    except (OSError, ValueError, AttributeError):
        return OFFICIAL_INPUT_SIZE
    if isinstance(size, list) and size and isinstance(size[0], int) and size[0] > 0:
        return size[0]
    return OFFICIAL_INPUT_SIZE


@functools.cache
def _ddcolor_registry() -> Any:
    """A spandrel registry that knows DDColor only, so any other network is told apart by name, not misloaded."""
    from spandrel import ArchRegistry, ArchSupport
    from spandrel_extra_arches.architectures.DDColor import DDColorArch

    registry = ArchRegistry()
    registry.add(ArchSupport.from_architecture(DDColorArch()))
    return registry


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
