"""A Python client for a running oldphoto server: submit a photo, follow its events live, fetch the result.

    from oldphoto.client import Client

    with Client("http://127.0.0.1:8000") as client:          # gets an anonymous session when no token is given
        result = client.restore("photo.jpg", steps="colorize", on_event=print)
        Path("out.png").write_bytes(result)

It speaks only the public protocol of SPEC (REST + `/ws/progress`), so it works against any deployment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

FINAL = frozenset({"complete", "error", "cancelled"})


class JobFailed(Exception):
    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__(event.get("error") or event.get("type"))
        self.event = event
        self.code = event.get("code") or event.get("type")


class Client:
    def __init__(self, base_url: str, token: str | None = None, *, lang: str = "en", timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.lang = lang
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self.token = token or self.http.post("/api/session").raise_for_status().json()["token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def submit(
        self, photo: str | Path | bytes, *, steps: str | None = None, workflow: str | dict | None = None, model: str | None = None
    ) -> dict[str, Any]:
        data = Path(photo).read_bytes() if isinstance(photo, (str, Path)) else photo
        name = Path(photo).name if isinstance(photo, (str, Path)) else "photo"
        fields = {k: v for k, v in {"steps": steps, "model": model}.items() if v}
        if workflow is not None:
            fields["workflow"] = workflow if isinstance(workflow, str) else json.dumps(workflow)
        return self._json(self.http.post("/api/jobs", files={"file": (name, data)}, data=fields))

    def events(self, job_id: str, after_seq: int = 0, *, metrics: bool = False) -> Iterator[dict[str, Any]]:
        """The job's events from `after_seq` on, live, until its final one; with `metrics`, its live `metrics` events
        too (docs/protocol.md, "Metrics": `"live": true`, they repeat the last seq)."""
        query = f"job_id={job_id}&after_seq={after_seq}&lang={self.lang}" + ("&metrics=1" if metrics else "")
        ws_url = self.base_url.replace("http", "ws", 1) + f"/ws/progress?{query}"
        with connect(ws_url, subprotocols=["bearer", self.token]) as ws:  # type: ignore[list-item]
            for frame in ws:
                event = json.loads(frame)
                yield event
                if event.get("job_id") == job_id and event["type"] in FINAL:
                    return

    def status(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/api/jobs/{job_id}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.delete(f"/api/jobs/{job_id}"))

    def result(self, job_id: str) -> bytes:
        return self.http.get(f"/results/{job_id}.png").raise_for_status().content

    def restore(
        self, photo: str | Path | bytes, *, on_event: Callable[[dict[str, Any]], None] | None = None, metrics: bool = False, **options: Any
    ) -> bytes:
        """Submit, follow to the end, and return the result PNG; raises JobFailed on error or cancel."""
        job_id = self.submit(photo, **options)["job_id"]
        last: dict[str, Any] = {}
        for last in self.events(job_id, metrics=metrics):
            if on_event:
                on_event(last)
        if last.get("type") != "complete":
            raise JobFailed(last)
        return self.result(job_id)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            raise JobFailed(
                {"type": "error", "code": body.get("code", str(response.status_code)), "error": body.get("error", response.text)}
            )
        return response.json()
