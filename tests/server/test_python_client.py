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


def test_the_python_client_follows_a_jobs_metrics_when_asked(server: ServerProcess) -> None:
    with Client(server.url) as client:
        asked: list[dict] = []
        client.restore(png_bytes(160, 120), steps="colorize", on_event=asked.append, metrics=True)
        plain = list(client.events(client.submit(png_bytes(160, 120), steps="colorize")["job_id"]))
    live = [e for e in asked if e["type"] == "metrics"]
    assert live and all(e["live"] is True and e["metrics"]["rss_bytes"] > 0 for e in live)
    assert asked[-1]["metrics"]["peak_rss_bytes"] > 0  # the summary on `complete`
    assert not [e for e in plain if e["type"] == "metrics"] and plain[-1]["metrics"]["stages"]
