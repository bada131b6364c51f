"""Receiving an upload without trusting it: the body is counted while it streams and cut off at the limit, and
the file lands under a name of ours. It is judged later (`server/inspect.py`) by its bytes, never by its name or
content type, and only once the cheaper checks of the request have passed."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from oldphoto.errors import BadInput, TooLarge

FORM_OVERHEAD = 256 * 1024  # room for the other fields (a workflow) and the multipart framing


@dataclass
class Upload:
    path: Path  # spooled, not yet judged
    fields: dict[str, str]


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"The file is larger than the limit of {limit / (1024 * 1024):g} MB.")


def limited_request(request: Request, limit: int) -> Request:
    """The same request, whose body stops with TooLarge once more than `limit` bytes have come in."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit - FORM_OVERHEAD)
        return message

    return Request(request.scope, receive)


async def receive_upload(request: Request, *, max_bytes: int, tmp_dir: Path) -> Upload:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD:
        raise _too_large(max_bytes)
    form = await limited_request(request, max_bytes + FORM_OVERHEAD).form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadInput("Attach the photo as the multipart field 'file'.", code="missing_file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        path = await _spool(upload, tmp_dir, max_bytes)
    finally:
        await form.close()
    return Upload(path=path, fields=fields)


async def _spool(upload: UploadFile, tmp_dir: Path, max_bytes: int) -> Path:
    """Onto disk in a thread: the loop does not wait on the file system."""
    return await asyncio.to_thread(_spool_blocking, upload, tmp_dir, max_bytes)


def _spool_blocking(upload: UploadFile, tmp_dir: Path, max_bytes: int) -> Path:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", delete=False)  # noqa: SIM115 - closed below
    path = Path(handle.name)
    try:
        with handle:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, handle, 1024 * 1024)
        if path.stat().st_size > max_bytes:
            raise _too_large(max_bytes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
