from __future__ import annotations

import io

import pytest
from PIL import Image

from oldphoto.client import Client, JobFailed
from tests.helpers.server import ServerProcess
from tests.server.conftest import png_bytes


def test_the_python_client_restores_a_photo_and_reports_failures(server: ServerProcess) -> None:
    events: list[dict] = []
    with Client(server.url) as client:
        result = client.restore(png_bytes(72, 40), steps="sharpen", on_event=events.append)
        assert Image.open(io.BytesIO(result)).size == (72, 40)
        assert events[0]["stage"] == "upload" and events[-1]["type"] == "complete"
        with pytest.raises(JobFailed) as failed:
            client.submit(b"not an image")
        assert failed.value.code == "unsupported_format"
