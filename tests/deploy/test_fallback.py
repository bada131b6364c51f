"""When WebSockets cannot get through (issue 14, item 4; docs/deploy.md, "When WebSockets cannot get through").

deploy/nginx.conf in front of a real `oldphoto serve`, rendered as an operator would and then broken as a
misconfigured proxy is:

- `no_upgrade`: the `/ws/` location without the Upgrade and Connection headers, so the handshake reaches the app as
  a plain GET and the client gets an HTTP error instead of a WebSocket;
- `held`: the same, and the event stream buffered (`proxy_buffering on`, the app's `X-Accel-Buffering: no`
  ignored), so a job's events reach the client only when its stream ends, after the job. The site speaks
  HTTP/1.1 only (no `http2` on its `listen` lines): over HTTP/2, nginx 1.22 passed the buffered stream's events on
  at once (measured with curl: the first event after 0.01 s over HTTP/2, 4.1 s, at the job's end, over HTTP/1.1),
  and Chromium speaks HTTP/2 to it.

Through the first the Python client and the page follow a job over SSE, through the second by polling
`GET /api/jobs/{id}`; each gets every recorded seq once (the client) and shows the bar moving to the end (the page).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, WebSocketRoute, sync_playwright
from websockets.exceptions import InvalidStatus

from oldphoto.client import Client
from tests.helpers.images import png_bytes
from tests.helpers.proxy import APP_ENV, SECRET, Proxy, nginx_binary, read_stream, running_nginx, token
from tests.helpers.server import ServerProcess, start_server
from tests.server.test_telemetry import pause

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
UPGRADE = re.compile(r"\n\s*proxy_set_header (Upgrade \$http_upgrade|Connection \$connection_upgrade);")


def no_upgrade(site: str) -> str:
    """The /ws/ location without the two headers that make nginx pass a WebSocket upgrade on."""
    edited, count = UPGRADE.subn("", site)
    assert count == 2, "the site file no longer has the upgrade headers this test removes"
    return edited


def held(site: str) -> str:
    """No upgrade, and the event stream buffered by nginx until it ends, whatever the app asks."""
    events = "    location ~ ^/api/jobs/[^/]+/events$ {\n        proxy_pass http://oldphoto_web;\n        proxy_buffering off;"
    assert events in site, "the site file's events location changed"
    buffered = events.replace("proxy_buffering off;", "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;")
    edited, count = re.subn(r"(listen \d+ ssl) http2", r"\1", no_upgrade(site).replace(events, buffered))
    assert count == 2, "the site file's TLS listen lines changed"
    return edited


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    nginx_binary()  # skip (or fail in CI) before starting the app
    env = {**APP_ENV, "OLDPHOTO_WORKERS": "2", "OLDPHOTO_JWT_SECRET": SECRET}
    process = start_server(tmp_path_factory.mktemp("app"), env)
    yield process
    process.stop()


def site(app: ServerProcess, prefix: Path, edit: Callable[[str], str]) -> Iterator[Proxy]:
    with running_nginx(prefix, [f"127.0.0.1:{app.port}"], edit=edit) as (https_port, http_port):
        yield Proxy(https_port, http_port, app)


@pytest.fixture(scope="module")
def no_upgrade_site(app: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from site(app, tmp_path_factory.mktemp("nginx-no-upgrade"), no_upgrade)


@pytest.fixture(scope="module")
def plain_site(app: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """deploy/nginx.conf as shipped."""
    yield from site(app, tmp_path_factory.mktemp("nginx-plain"), lambda text: text)


@pytest.fixture(scope="module")
def held_site(app: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from site(app, tmp_path_factory.mktemp("nginx-held"), held)


def submit(proxy: Proxy, user: str, seconds: float) -> str:
    response = proxy.http(user).post("/api/jobs", files={"file": ("p.png", png_bytes(32, 32))}, data={"workflow": pause(seconds)})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def follow_with_the_client(proxy: Proxy, user: str, seconds: float) -> tuple[list[dict[str, Any]], set[str]]:
    """Every event the client yields for a new job through the proxy, and the transports that delivered them."""
    with Client(proxy.url, token(user), verify=False) as client:
        job = submit(proxy, user, seconds)
        events, used = [], set()
        for event in client.events(job, give_up_after=20):
            events.append(event)
            assert client.transport is not None
            used.add(client.transport)
    # The job's whole log, read straight from the app once it has ended: what the client must have yielded.
    direct = httpx.Client(base_url=proxy.app.url, headers={"Authorization": f"Bearer {token(user)}"}, timeout=30)
    log = [(e["seq"], e["type"]) for _, e in read_stream(direct, job) if not e.get("live")]
    assert [(e["seq"], e["type"]) for e in events if not e.get("live")] == log
    return events, used


def assert_every_seq_once(events: list[dict[str, Any]]) -> None:
    recorded = [e["seq"] for e in events if not e.get("live")]
    assert recorded == list(range(1, len(recorded) + 1)), recorded
    assert events[-1]["type"] == "complete" and events[-1]["result_url"], events[-1]


# ------------------------------------------------------------------------------------------------ the Python client


def test_where_the_proxy_drops_the_upgrade_the_client_follows_the_job_over_sse(no_upgrade_site: Proxy) -> None:
    with pytest.raises(InvalidStatus):  # the site's premise: no WebSocket gets through it
        no_upgrade_site.socket("premise", "?job_id=x").close()
    events, used = follow_with_the_client(no_upgrade_site, "client-sse", 1.0)
    assert_every_seq_once(events)
    assert used == {"sse"}, used


def test_where_the_proxy_also_holds_the_event_stream_the_client_polls_and_still_gets_every_seq(held_site: Proxy) -> None:
    started = time.monotonic()
    events, used = follow_with_the_client(held_site, "client-poll", 8.0)
    assert used == {"poll"}, used
    assert_every_seq_once(events)
    # While the job ran, its status reads moved the bar (each a live event, the last recorded seq again) ...
    polled = [e["progress"] for e in events if e.get("polled") and e["type"] == "progress" and e.get("stage") == "inference"]
    assert any(0 < p < 100 for p in polled) and polled == sorted(polled), polled
    # ... and the job's own events came once it ended, in one read of its (then finished) stream.
    assert time.monotonic() - started < 25


# --------------------------------------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def page_following_a_job(
    browser: Browser, proxy: Proxy, seconds: float, prepare: Callable[[Page], None] = lambda page: None
) -> Iterator[Page]:
    """The page, through the proxy, showing a job of `seconds` sent by its own session (as a reload would show it)."""
    context = browser.new_context(base_url=proxy.url, ignore_https_errors=True)
    page = context.new_page()
    prepare(page)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    page.wait_for_function("() => localStorage.getItem('oldphoto.sessionUntil')")  # the page's session is started
    answer = context.request.post(
        "/api/jobs", multipart={"file": {"name": "p.png", "mimeType": "image/png", "buffer": png_bytes(32, 32)}, "workflow": pause(seconds)}
    )
    assert answer.status == 202, answer.text()
    job = answer.json()["job_id"]
    page.evaluate("job => sessionStorage.setItem('oldphoto.job', JSON.stringify({jobId: job, fileName: 'p.png'}))", job)
    page.reload()
    yield page
    context.close()
    assert not errors, errors


def watch_the_bar(page: Page, timeout: float = 40) -> list[tuple[str, str, int, bool]]:
    """(transport, status, percent, whether the transport note shows) each time one of them changes, until the job
    has ended."""
    seen: list[tuple[str, str, int, bool]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = page.evaluate(
            """() => { const card = document.getElementById("job");
                       const bar = document.getElementById("progress-bar");
                       return [card.dataset.transport || "", card.dataset.status || "", Number(bar.getAttribute("aria-valuenow")),
                               !document.getElementById("transport-note").hidden]; }"""
        )
        state = (now[0], now[1], now[2], now[3])
        if not seen or seen[-1] != state:
            seen.append(state)
        if state[1] in ("succeeded", "failed", "cancelled"):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the job did not end on the page: {seen[-5:]}")


def assert_the_bar_moved_over(seen: list[tuple[str, str, int, bool]], transport: str) -> None:
    moving = [percent for way, status, percent, _ in seen if way == transport and status == "running" and 0 < percent < 100]
    assert len(set(moving)) >= 2, f"the bar did not move while the events came over {transport}: {seen}"
    # The page said how the news came while it came that way, and says nothing once the job has ended.
    assert all(note for way, status, _, note in seen if way == transport and status == "running"), seen
    assert seen[-1] == (transport, "succeeded", 100, False), seen
    percents = [p for _, _, p, _ in seen]
    assert percents == sorted(percents), f"the bar went backwards: {seen}"


@pytest.mark.browser  # Chromium, as tests/browser
def test_where_the_proxy_drops_the_upgrade_the_page_shows_the_live_bar_over_sse(browser: Browser, no_upgrade_site: Proxy) -> None:
    for page in page_following_a_job(browser, no_upgrade_site, 4.0):
        seen = watch_the_bar(page)
        assert_the_bar_moved_over(seen, "sse")
        assert page.get_by_test_id("download").is_visible()


@pytest.mark.browser  # Chromium, as tests/browser
def test_where_the_proxy_also_holds_the_event_stream_the_page_polls_and_shows_the_live_bar(browser: Browser, held_site: Proxy) -> None:
    for page in page_following_a_job(browser, held_site, 10.0):
        seen = watch_the_bar(page)
        assert_the_bar_moved_over(seen, "poll")
        assert page.get_by_test_id("download").is_visible()


@pytest.mark.browser  # Chromium, as tests/browser
def test_cancel_works_while_the_page_polls(browser: Browser, held_site: Proxy) -> None:
    for page in page_following_a_job(browser, held_site, 20.0):
        page.wait_for_function("() => document.getElementById('job').dataset.transport === 'poll'", timeout=15_000)
        page.wait_for_function("() => document.getElementById('job').dataset.status === 'running'", timeout=15_000)
        with page.expect_request(lambda r: r.method == "DELETE" and "/api/jobs/" in r.url, timeout=5_000):  # REST: no socket
            page.get_by_test_id("cancel").click()
        page.wait_for_function("() => document.getElementById('job').dataset.status === 'cancelled'", timeout=10_000)
        said = f"{page.get_by_test_id('stage-text').text_content()} {page.get_by_test_id('status').text_content()}"
        assert "Cancelled" in said, said
        assert page.get_by_test_id("cancel").is_hidden()


@pytest.mark.browser  # Chromium, as tests/browser
def test_the_page_goes_back_to_the_websocket_once_it_gets_through_again(browser: Browser, plain_site: Proxy) -> None:
    """A network that closes every WebSocket as soon as it opens, then lets them through: the page follows the job
    over SSE meanwhile, and takes the WebSocket up again at its next try (the page's clock is moved on to it)."""
    network = {"blocks": True, "sockets": 0}

    def through(route: WebSocketRoute) -> None:
        network["sockets"] += 1
        if network["blocks"]:
            route.close(code=1011, reason="blocked")
        else:
            route.connect_to_server()

    def prepare(page: Page) -> None:
        page.clock.install()
        page.route_web_socket(re.compile(r"/ws/progress"), through)

    for page in page_following_a_job(browser, plain_site, 8.0, prepare):
        # Over SSE, and its events coming (moving the clock on before the stream's first event would judge it held).
        page.wait_for_function(
            "() => { const job = document.getElementById('job'); return job.dataset.transport === 'sse' && job.dataset.status === 'running'; }",
            timeout=15_000,
        )
        tries = network["sockets"]
        network["blocks"] = False
        page.clock.fast_forward(31_000)  # the next try of the WebSocket is due 30 s after the fallback
        seen = watch_the_bar(page)
        assert network["sockets"] == tries + 1, (network, seen)  # one try, taken up: no flapping
        ways = [way for i, (way, *_) in enumerate(seen) if i == 0 or seen[i - 1][0] != way]
        assert ways == ["sse", "ws"], seen
        on_ws = {percent for way, status, percent, _ in seen if way == "ws" and status == "running" and 0 < percent < 100}
        assert len(on_ws) >= 2 and not any(note for way, *_, note in seen if way == "ws"), seen
        assert seen[-1] == ("ws", "succeeded", 100, False), seen
