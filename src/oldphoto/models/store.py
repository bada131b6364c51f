"""Where weights live on disk: the models dir, filled from Hugging Face on first use.

Layout: `<models_dir>/<name>/` holds what the model's repo holds (`config.json` and `model.safetensors` or
`pytorch_model.bin`) plus `<weights>.sha256` (sha256sum format), written after the download was checked against
the hash the hub published. A user may instead drop a checkpoint in by hand, as `<models_dir>/<name>/<file>` with
any of the model's file names or as `<models_dir>/<name>.pth` (`.pt`, `.safetensors`, `.bin`).

Every failure to get a model is a `ModelMissing` whose sentence says what to run or where to put the file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.std import tqdm

from oldphoto.errors import ModelInvalid, ModelMissing, OldphotoError
from oldphoto.models.registry import CHECKPOINT_SUFFIXES, DDCOLOR_MODELS, KnownModel

# Bytes done so far and the total (None while the hub has not said; a number as tqdm keeps it).
DownloadProgress = Callable[[int, float | None], None]

# The hub library retries a failing request five times with backoff (over 20 s): a probe with these limits and
# no retries comes first, so an unreachable hub is a clear error in seconds, not a hung job.
PROBE_TIMEOUT_S = 5.0
CONFIG_FILE = "config.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelStore:
    def __init__(self, models_dir: Path, *, endpoint: str | None = None) -> None:
        self.models_dir = Path(models_dir).expanduser()
        # HF_ENDPOINT (a mirror) is read here, not once at import as the hub library does; None means huggingface.co.
        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None

    def model_dir(self, name: str) -> Path:
        return self.models_dir / name

    def cached_path(self, name: str) -> Path | None:
        """The weights of a known model if they are on disk, without touching the network."""
        known = _known(name)
        folder = self.model_dir(name)
        candidates = [folder / f for f in known.weight_files]
        candidates += [self.models_dir / f"{name}{suffix}" for suffix in CHECKPOINT_SUFFIXES]
        return next((p for p in candidates if p.is_file() and p.stat().st_size > 0), None)

    def resolve(self, name_or_path: str, progress: DownloadProgress | None = None) -> Path:
        """A known name: its cached weights, downloaded on first use. A path: that checkpoint file or folder."""
        if name_or_path in DDCOLOR_MODELS:
            return self.cached_path(name_or_path) or self.pull(name_or_path, progress=progress)
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            return path
        if path.is_file():
            if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
                raise ModelInvalid(f"{path} is not a checkpoint: expected one of {', '.join(CHECKPOINT_SUFFIXES)}.")
            return path
        if path.suffix or os.sep in name_or_path or "/" in name_or_path:
            raise ModelMissing(f"There is no checkpoint at {path}.")
        raise ModelMissing(f"Unknown model {name_or_path!r}: use one of {', '.join(DDCOLOR_MODELS)} or the path of a checkpoint file.")

    def pull(self, name: str, progress: DownloadProgress | None = None, *, force: bool = False) -> Path:
        """Download a known model into the models dir and check it. `progress=None` shows the hub's tqdm bar."""
        known = _known(name)
        if not force and (cached := self.cached_path(name)) is not None:
            return cached
        if hub_offline():
            raise ModelMissing(self._missing_sentence(known, "downloads are switched off (HF_HUB_OFFLINE is set)"))
        filename, expected_sha = self._probe(known)
        folder = self.model_dir(name)
        self._download(known, CONFIG_FILE, folder, None, optional=True, force=force)
        path = self._download(known, filename, folder, progress, optional=False, force=force)
        assert path is not None
        record_sha256(path, expected_sha)
        return path

    def verify(self, name: str) -> bool:
        """Whether the cached weights still hash to what was recorded when they were downloaded."""
        path = self.cached_path(name)
        record = sha256_record(path) if path is not None else None
        if path is None or record is None:
            return False
        return file_sha256(path) == record

    def _probe(self, known: KnownModel) -> tuple[str, str | None]:
        """Which weight file the repo holds and the sha256 the hub publishes for it (its LFS etag)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError

        for filename in known.source.files:
            url = hf_hub_url(known.source.repo, filename, endpoint=self.endpoint)
            try:
                meta = get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S, retry_on_errors=False)
            except EntryNotFoundError:
                continue
            # Any other failure (no route, DNS, refused, HTTP 5xx, unknown repo) means the same to the user:
            # the weights cannot be fetched from here, and the sentence says what to do instead.
            except Exception as exc:
                raise ModelMissing(self._missing_sentence(known, f"the hub could not be reached ({_reason(exc)})")) from None
            etag = (meta.etag or "").lower()
            return filename, etag if _SHA256.match(etag) else None
        raise ModelMissing(self._missing_sentence(known, f"{known.source.repo} holds none of {', '.join(known.source.files)}"))

    def _download(
        self, known: KnownModel, filename: str, folder: Path, progress: DownloadProgress | None, *, optional: bool, force: bool
    ) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        kwargs: dict[str, Any] = {"local_dir": folder, "endpoint": self.endpoint, "etag_timeout": PROBE_TIMEOUT_S, "force_download": force}
        if progress is not None:
            kwargs["tqdm_class"] = functools.partial(_CallbackBar, on_bytes=progress)
        try:
            return Path(hf_hub_download(known.source.repo, filename, **kwargs))
        except OldphotoError:
            raise  # Cancelled from the progress callback goes up as it is
        except EntryNotFoundError:
            if optional:
                return None
            raise ModelMissing(self._missing_sentence(known, f"{filename} is no longer in {known.source.repo}")) from None
        except Exception as exc:
            raise ModelMissing(self._missing_sentence(known, f"the download failed ({_reason(exc)})")) from None

    def _missing_sentence(self, known: KnownModel, why: str) -> str:
        folder = self.model_dir(known.name)
        sentence = (
            f"The model {known.name} is not in the model cache and {why}. "
            f"Run `oldphoto models pull {known.name}` where the network is reachable, "
            f"or put {' or '.join(known.source.files)} from {known.source.url} into {folder}/"
        )
        for alternative in known.alternatives:
            sentence += f", or {' or '.join(alternative.files)} from {alternative.url}"
        return sentence + "."


class _CallbackBar(tqdm):
    """A silent progress bar that hands byte counts to a callback (the hub library drives it)."""

    def __init__(self, *args: Any, on_bytes: DownloadProgress, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
        self._on_bytes = on_bytes
        self.n = kwargs.get("initial") or 0

    def update(self, n: float | None = 1) -> bool | None:
        # tqdm counts nothing while disabled, so this bar keeps its own count.
        self.n += n or 0
        self._on_bytes(int(self.n), self.total)
        return True


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as it is now (the hub library reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_record(path: Path) -> str | None:
    try:
        fields = path.with_name(path.name + ".sha256").read_text().split()
    except FileNotFoundError:
        return None
    return fields[0].lower() if fields else None


def record_sha256(path: Path, expected: str | None) -> str:
    """Hash a downloaded file, check it against the hub's hash when there is one, and write it beside the file."""
    actual = file_sha256(path)
    if expected is not None and actual != expected:
        path.unlink(missing_ok=True)
        raise ModelInvalid(f"The download of {path.name} is corrupt (sha256 {actual}, expected {expected}); it was removed, pull it again.")
    path.with_name(path.name + ".sha256").write_text(f"{actual}  {path.name}\n")
    return actual


def _known(name: str) -> KnownModel:
    known = DDCOLOR_MODELS.get(name)
    if known is None:
        raise ModelMissing(f"Unknown model {name!r}: the known models are {', '.join(DDCOLOR_MODELS)}.")
    return known


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
