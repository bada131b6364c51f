"""Where a colorize job's colour-query maps are kept (docs/protocol.md, "Colour queries"): one zip file beside its
result, `<results dir>/<job id>.attention.zip` (an index, `index.json`, and the PNGs), written by the worker after the
result and removed wherever the result is. In the scale-out wiring it travels through the job store as the blob
`KIND`, as the result does.

Standard library only: the web process reads these files and must load neither numpy nor PyTorch.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oldphoto.imaging.encode import write_atomic

if TYPE_CHECKING:
    from oldphoto.imaging.querymaps import QueryMaps

KIND = "maps"  # the blobs table holds kinds of at most 8 characters
SUFFIX = ".attention.zip"
INDEX = "index.json"
# The names a map may have (`dominance`, `query-17`): checked before a request's name is looked up.
NAME = re.compile(r"^[a-z0-9-]{1,32}$")


def path_for(result: Path) -> Path:
    return result.with_name(f"{result.stem}{SUFFIX}")


def job_of(path: Path) -> str | None:
    """The job id of a maps file's name (None for any other file)."""
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else None


def pack(maps: QueryMaps) -> bytes:
    buffer = io.BytesIO()
    # Stored, not deflated: the PNGs are compressed already.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(INDEX, json.dumps(maps.index))
        for name, data in maps.images.items():
            archive.writestr(f"{name}.png", data)
    return buffer.getvalue()


def save(path: Path, maps: QueryMaps) -> None:
    write_atomic(path, pack(maps))


def read_index(path: Path) -> dict[str, Any] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return dict(json.loads(archive.read(INDEX)))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def read_image(path: Path, name: str) -> bytes | None:
    if not NAME.match(name):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(f"{name}.png")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def urls(job_id: str, index: dict[str, Any]) -> dict[str, Any]:
    """The index as `GET /api/jobs/{id}/attention` answers it: each map named by its address."""

    def url(name: str) -> str:
        return f"/api/jobs/{job_id}/attention/{name}.png"

    queries = [{**{k: v for k, v in query.items() if k != "map"}, "map_url": url(query["map"])} for query in index.get("queries", [])]
    rest = {k: v for k, v in index.items() if k not in ("dominance", "queries")}
    return {**rest, "dominance_url": url(index["dominance"]), "queries": queries}
