"""A Python client for a running oldphoto server: submit a photo, follow its events live, fetch the result.

    from oldphoto.client import Client

    with Client("http://127.0.0.1:8000") as client:          # gets an anonymous session when no token is given
        result = client.restore("photo.jpg", steps="colorize", on_event=print)
        Path("out.png").write_bytes(result)

It speaks only the public protocol of SPEC (REST + `/ws/progress`), so it works against any deployment.

When WebSockets cannot get through (a proxy that drops the Upgrade headers, a network that blocks them),
`events()` follows the job over Server-Sent Events (`GET /api/jobs/{id}/events`), and when that does not stream
either (a proxy that buffers it), by polling `GET /api/jobs/{id}` (docs/deploy.md, "When WebSockets cannot get
through"). A connection that drops mid-job (a restarted server, a stopped or killed web node) is reopened with
backoff and jitter after the last seq yielded: no event is yielded twice, none is skipped. `transport=` pins one
way ("ws", "sse", "poll"); `client.transport` says which one delivered the last event.
"""

from __future__ import annotations

import json
import random
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

FINAL = frozenset({"complete", "error", "cancelled"})
Transport = Literal["auto", "ws", "sse", "poll"]
BETTER_FIRST: tuple[Transport, ...] = ("ws", "sse", "poll")

# Every stream is opened after the seq *before* the last one yielded (0 at the start), so the server replays at least
# one recorded event at once (SPEC: every job's log starts with its upload event). A stream that delivers nothing
# within this long got through but is held somewhere: a proxy that buffers it (nginx's `proxy_buffering on` keeps
# 4-8 KB, a small job's whole log) or one that opens WebSockets and relays nothing. 5 s is seconds more than the
# server needs to read one event from its log, even loaded.
FIRST_EVENT_S = 5.0
# A stream that has delivered, then says nothing (not even a heartbeat) for this long is checked against the job's
# status: if the job is ahead of what the stream told, the stream is held (a buffer that let its first bytes out).
STREAM_QUIET_S = 5.0
# Polling: once a second is what a person watching a bar needs, and one small GET a second is cheap for the server.
POLL_EVERY_S = 1.0
# A worse transport in use is left for the better ones again after this long (a network may come back); long
# enough that a proxy that refuses them costs one failed try (and FIRST_EVENT_S of a held stream) per half minute.
RETRY_BETTER_S = 30.0
# Reconnecting: exponential backoff with "equal jitter" (at least half the ceiling), as the page does, so that a
# restarted server is not hit by every client at the same instant.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 15.0
# WebSocket close codes after which the same request, made again, may succeed (a node going away or restarting,
# a connection lost without a close frame, a server error).
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


class JobFailed(Exception):
    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__(event.get("error") or event.get("type"))
        self.event = event
        self.code = event.get("code") or event.get("type")


class Unreachable(ConnectionError):
    """No transport got through to the server for `give_up_after` seconds."""


class _Down(Exception):
    """The server (or the way to it) is down for now: back off, then try again from the best transport."""


class _Refused(Exception):
    """This transport does not get through here (refused handshake, held stream): use the next one at once."""


class Client:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        lang: str = "en",
        timeout: float = 60.0,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.lang = lang
        self.verify = verify
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify)
        self.token = token or self.http.post("/api/session").raise_for_status().json()["token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.transport: Transport | None = None  # the one that delivered the last event

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

    def events(
        self,
        job_id: str,
        after_seq: int = 0,
        *,
        metrics: bool = False,
        transport: Transport = "auto",
        give_up_after: float = 120.0,
    ) -> Iterator[dict[str, Any]]:
        """The job's events from `after_seq` on, live, until its final one; with `metrics`, its live `metrics` events
        too (docs/protocol.md, "Metrics": `"live": true`, they repeat the last seq).

        `transport`: "auto" tries the WebSocket, then SSE, then polling (see the module's docstring); the others pin
        one. A dropped connection is reopened after the last seq yielded; `Unreachable` when nothing got through for
        `give_up_after` seconds. While polling, each change of the job's status is yielded as a live event
        (`"live": true, "polled": true`, the last seq again) and the job's recorded events follow when it ends."""
        yield from _Follower(self, job_id, after_seq, metrics).run(transport, give_up_after)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/api/jobs/{job_id}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.delete(f"/api/jobs/{job_id}"))

    def result(self, job_id: str) -> bytes:
        return self.http.get(f"/results/{job_id}.png").raise_for_status().content

    def restore(
        self,
        photo: str | Path | bytes,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        metrics: bool = False,
        transport: Transport = "auto",
        **options: Any,
    ) -> bytes:
        """Submit, follow to the end, and return the result PNG; raises JobFailed on error or cancel."""
        job_id = self.submit(photo, **options)["job_id"]
        last: dict[str, Any] = {}
        for last in self.events(job_id, metrics=metrics, transport=transport):
            if on_event:
                on_event(last)
        if last.get("type") != "complete":
            raise JobFailed(last)
        return self.result(job_id)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise JobFailed(_error_event(response))
        return response.json()

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.base_url.startswith("https"):
            return None
        if isinstance(self.verify, ssl.SSLContext):
            return self.verify
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _error_event(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            body = response.json()
        except ValueError:
            body = {}
    return {"type": "error", "code": body.get("code", str(response.status_code)), "error": body.get("error", response.text)}


def _refusal(response: httpx.Response) -> Exception:
    """A 4xx about the job or the caller (not found, not yours, no session) is final; anything else may pass."""
    if 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429):
        return JobFailed(_error_event(response))
    return _Down(f"HTTP {response.status_code}")


class _Follower:
    """One job followed to its end over whichever transport gets through, each recorded seq yielded once."""

    def __init__(self, client: Client, job_id: str, after_seq: int, metrics: bool) -> None:
        self.client = client
        self.job_id = job_id
        self.last = after_seq  # the last recorded seq yielded
        self.metrics = metrics
        self.done = False
        self.seen: dict[str, Any] = {}  # what the job last said (status, stage, progress): the stall check's reference
        # The last time a transport reached the server (a socket opened, a stream or a status read answered): a job
        # that is quiet (waiting in the queue, say) is not a server out of reach.
        self.reached = time.monotonic()

    def run(self, transport: Transport, give_up_after: float) -> Iterator[dict[str, Any]]:
        order = BETTER_FIRST if transport == "auto" else (transport,)
        refused_until: dict[str, float] = {}
        attempt = 0
        while True:
            tried = time.monotonic()
            for name in order:
                if name != order[-1] and refused_until.get(name, 0.0) > time.monotonic():
                    continue
                try:
                    for event in self._transport(name):
                        self.client.transport = name
                        yield event
                        if self.done:
                            return
                    raise _Down("the stream ended before the job did")
                except _Refused:
                    refused_until[name] = time.monotonic() + RETRY_BETTER_S
                    if name == order[-1]:
                        break  # even the last resort was held: back off
                    continue
                except _Down:
                    break
            if time.monotonic() - self.reached > give_up_after:
                raise Unreachable(f"no way through to {self.client.base_url} for {give_up_after:.0f} s")
            if self.reached >= tried:
                attempt = 0  # it got through this time (a stream reopened while the job is quiet): no backing off
            ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
            attempt += 1
            time.sleep(ceiling / 2 + random.random() * ceiling / 2)

    def _transport(self, name: str) -> Iterator[dict[str, Any]]:
        if name == "ws":
            return self._websocket()
        if name == "sse":
            return self._stream()
        return self._poll()

    # ---------------------------------------------------------------------------------------------- what is passed on

    def _take(self, event: dict[str, Any]) -> bool:
        """Whether to yield an event: a recorded one only once and in order; a live one always."""
        if event.get("job_id") != self.job_id:
            return False
        if not event.get("live") and isinstance(event.get("seq"), int):
            if event["seq"] <= self.last:
                return False
            self.last = event["seq"]
        if event.get("type") != "metrics":
            self.seen = {k: event.get(k, self.seen.get(k)) for k in ("type", "stage", "progress")}
        if event.get("type") in FINAL and not event.get("live"):
            self.done = True
        return True

    def _probe_from(self) -> int:
        # One before the last seq yielded: the server replays that one at once (dropped here as a repeat), which
        # tells a stream that streams from one that is held.
        return max(0, self.last - 1)

    def _query(self, after: int) -> str:
        return f"after_seq={after}&lang={self.client.lang}" + ("&metrics=1" if self.metrics else "")

    # ------------------------------------------------------------------------------------------------------ WebSocket

    def _websocket(self) -> Iterator[dict[str, Any]]:
        client = self.client
        url = client.base_url.replace("http", "ws", 1) + f"/ws/progress?job_id={self.job_id}&{self._query(self._probe_from())}"
        try:
            ws = connect(url, subprotocols=["bearer", client.token], ssl=client._ssl(), open_timeout=10)  # type: ignore[list-item]
        except InvalidHandshake as refused:  # an HTTP answer that is not the upgrade: a proxy in the way
            raise _Refused(str(refused)) from refused
        except (OSError, TimeoutError) as down:
            raise _Down(str(down)) from down
        with ws:
            try:
                first = ws.recv(timeout=FIRST_EVENT_S)
                self.reached = time.monotonic()
            except TimeoutError:
                raise _Refused("the WebSocket opened but said nothing") from None
            except ConnectionClosed as closed:
                raise self._closed(closed) from closed
            frames: Iterator[str | bytes] = iter(ws)
            try:
                for frame in _chain(first, frames):
                    self.reached = time.monotonic()
                    event = json.loads(frame)
                    if event.get("type") == "error" and event.get("seq") is None and event.get("job_id") == self.job_id:
                        raise JobFailed(event)  # the server refused to follow this job (not found, not yours)
                    if self._take(event):
                        yield event
                        if self.done:
                            return
            except ConnectionClosed as closed:
                raise self._closed(closed) from closed
            except OSError as lost:  # reset by a killed node
                raise _Down(str(lost)) from lost
        raise _Down("the WebSocket closed before the job ended")

    @staticmethod
    def _closed(closed: ConnectionClosed) -> Exception:
        code = closed.rcvd.code if closed.rcvd else 1006
        if code in RECONNECT_CODES or code == 1000:
            return _Down(f"closed with {code}")
        reason = (closed.rcvd.reason if closed.rcvd else "") or f"closed with {code}"
        return JobFailed({"type": "error", "code": "token_expired" if code == 4001 else f"closed_{code}", "error": reason})

    # ----------------------------------------------------------------------------------------------------------- SSE

    def _stream(self) -> Iterator[dict[str, Any]]:
        http = self.client.http
        path = f"/api/jobs/{self.job_id}/events?{self._query(self._probe_from())}"
        timeout = httpx.Timeout(http.timeout.connect, read=STREAM_QUIET_S, write=10.0, pool=10.0)
        got_one = False
        try:
            with http.stream("GET", path, timeout=timeout, headers={"Accept": "text/event-stream"}) as response:
                if response.status_code == 204:  # the job has ended and we have all of it
                    self.done = True
                    return
                if response.status_code != 200:
                    response.read()
                    raise _refusal(response)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise _Refused(f"not an event stream: {response.headers.get('content-type')}")
                for name, event in _sse_events(response.iter_lines()):
                    self.reached = time.monotonic()
                    if name == "token_expired":
                        raise JobFailed({"type": "error", **event})
                    got_one = True
                    if self._take(event):
                        yield event
                        if self.done:
                            return
        except httpx.ReadTimeout:
            if not got_one:
                raise _Refused(f"the event stream said nothing for {FIRST_EVENT_S:.0f} s: held by a proxy") from None
            if self._ahead():
                raise _Refused("the job is ahead of its event stream: held by a proxy") from None
            raise _Down("quiet stream, reopened") from None  # quiet because the job is: reopen (a fresh probe)
        except httpx.TransportError as down:
            raise _Down(str(down)) from down
        raise _Down("the event stream ended before the job did")

    def _ahead(self) -> bool:
        """Whether the job's status says more than its stream told (then the stream is held, not quiet)."""
        try:
            now = self.client.status(self.job_id)
        except (httpx.HTTPError, JobFailed):
            return False
        self.reached = time.monotonic()  # the stream had spoken and the server answers: the job is only quiet
        told = self.seen
        return now["status"] in ("succeeded", "failed", "cancelled") or (now.get("progress") or 0) > (told.get("progress") or 0)

    # ------------------------------------------------------------------------------------------------------- polling

    def _poll(self) -> Iterator[dict[str, Any]]:
        started = time.monotonic()
        previous: tuple[Any, ...] | None = None
        while True:
            try:
                response = self.client.http.get(f"/api/jobs/{self.job_id}", params={"lang": self.client.lang})
            except httpx.TransportError as down:
                raise _Down(str(down)) from down
            if response.status_code != 200:
                raise _refusal(response)
            self.reached = time.monotonic()
            job = response.json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                yield from self._tail(job)
                return
            now = (job["status"], job.get("stage"), job.get("progress"), job.get("position"), job.get("message"))
            if now != previous:
                previous = now
                event = _polled_event(self.job_id, self.last, job)
                if self._take(event):
                    yield event
            if time.monotonic() - started > RETRY_BETTER_S:
                raise _Down("time to try the better transports again")
            time.sleep(POLL_EVERY_S)

    def _tail(self, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The job has ended: its recorded events after the last yielded, read in one go. The stream of an ended job
        ends after its replay, so even a buffering proxy hands it over whole; if even that fails, its end is told
        from the status read."""
        try:
            with self.client.http.stream("GET", f"/api/jobs/{self.job_id}/events?{self._query(self.last)}") as response:
                if response.status_code == 200:
                    for name, event in _sse_events(response.iter_lines()):
                        if name is None and self._take(event):
                            yield event
                            if self.done:
                                return
        except httpx.HTTPError:
            pass
        if not self.done:
            final = {"succeeded": "complete", "failed": "error", "cancelled": "cancelled"}[job["status"]]
            event = {**_polled_event(self.job_id, self.last, job), "type": final}
            event.pop("live")
            self.done = True
            yield event


def _polled_event(job_id: str, seq: int, job: dict[str, Any]) -> dict[str, Any]:
    """A status read told as the event it stands for: live (not in the log), with the last seq yielded."""
    kind = "queued" if job["status"] == "queued" else "progress"
    event: dict[str, Any] = {
        "type": kind, "job_id": job_id, "seq": seq, "ts": time.time(), "live": True, "polled": True,
        "stage": job.get("stage"), "message": job.get("message"), "progress": job.get("progress") or 0,
    }  # fmt: skip
    for key in ("position", "result_url", "error", "code", "metrics"):
        if job.get(key) is not None:
            event[key] = job[key]
    return event


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(event name or None, data) of each event of a text/event-stream; comments (heartbeats) are skipped."""
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = None, []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()


def _chain(first: str | bytes, rest: Iterator[str | bytes]) -> Iterator[str | bytes]:
    yield first
    yield from rest
