"""The page with the ComfyUI backend (issue 15, "Done when"): the seed's own example workflow, submitted to this
service, runs on a real ComfyUI and the page shows it live (ComfyUI's node sentences, a bar that only climbs, the
result), replayable (a reload mid-job picks the same job up and never goes back), and cancellable (Cancel on the
page interrupts the prompt on ComfyUI).

The page has no workflow field: the job goes in through the REST API with the page's own session (`page.request`
carries its cookie), and the page is made to follow it as it does after a reload, from the tab's remembered job
(resume.js), replaying its log from seq 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, WebSocket, expect

from tests.browser.conftest import browser, save_screenshot  # noqa: F401 - the module's Chromium
from tests.comfy.test_backend import slow_prompt
from tests.helpers.comfyui import ComfyProcess
from tests.helpers.images import png_bytes
from tests.helpers.server import ServerProcess
from tests.helpers.workflows import SEED_EXAMPLE
from tests.server.conftest import Client

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_MS = 60_000
DDCOLOR_RUNNING = "ComfyUI is running DDColor_Colorize"
ESTIMATED = "estimated from its past runs"
UPSCALER_RUNNING = "ComfyUI: ImageUpscaleWithModel"  # its per-tile count: the prompt runs on ComfyUI


@pytest.fixture
def page(browser: Browser, comfy_server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[Page]:  # noqa: F811
    """A fresh context (a fresh anonymous user) on the page; fails on any uncaught script error, leaves a
    screenshot in test-artifacts/browser/, and cancels what the test left running."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=comfy_server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    page.wait_for_function("localStorage.getItem('oldphoto.sessionUntil')")  # booted: its session cookie is set
    yield page
    save_screenshot(page, f"comfy-{request.node.name}")
    for job in context.request.get("/api/jobs").json():
        if job["status"] in ("queued", "running"):
            context.request.delete(f"/api/jobs/{job['job_id']}")
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


# `watch` of tests/browser/test_page.py, installed before the page's scripts run (the document is parsed, its module
# scripts not yet run): every value the bar takes from the page's first render on, a replay after a reload included.
WATCH_FROM_THE_START = """document.addEventListener("readystatechange", () => {
  if (document.readyState !== "interactive") return;
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("stage-text");
  const seen = { values: [], sentences: [], reconnecting: false };
  new MutationObserver(() => seen.values.push(Number(bar.getAttribute("aria-valuenow"))))
    .observe(bar, { attributes: true, attributeFilter: ["aria-valuenow"] });
  new MutationObserver(() => seen.sentences.push(text.textContent))
    .observe(text, { childList: true, characterData: true, subtree: true });
  window.__seen = seen;
});"""


def submit_workflow(page: Page, workflow: dict, size: tuple[int, int] = (320, 240)) -> str:
    """Submits `workflow` as the page's user and makes the page follow the job, as after a reload."""
    photo = {"name": "grandparents.png", "mimeType": "image/png", "buffer": png_bytes(*size)}
    answer = page.request.post("/api/jobs", multipart={"file": photo, "workflow": json.dumps(workflow)})
    assert answer.status == 202, answer.text()
    job = answer.json()["job_id"]
    page.evaluate("job => sessionStorage.setItem('oldphoto.job', JSON.stringify({jobId: job, fileName: 'grandparents.png'}))", job)
    page.add_init_script(WATCH_FROM_THE_START)
    page.reload()
    return job


def received(page: Page) -> list[list[dict]]:
    """The events each WebSocket of the page is sent, one list per socket, as the server sent them."""
    sockets: list[list[dict]] = []

    def opened(socket: WebSocket) -> None:
        frames: list[dict] = []
        sockets.append(frames)
        socket.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", opened)
    return sockets


def logged(frames: list[dict], job: str) -> list[dict]:
    return [e for e in frames if e.get("job_id") == job and isinstance(e.get("seq"), int) and not e.get("live")]


def bar(page: Page) -> tuple[str, int, str]:
    """(status, percent, sentence) as the page shows them now."""
    return tuple(
        page.evaluate(
            """() => [document.getElementById("job").dataset.status,
                      Number(document.getElementById("progress-bar").getAttribute("aria-valuenow")),
                      document.getElementById("stage-text").textContent]"""
        )
    )


def sample(page: Page, until: Callable[[tuple[str, int, str]], bool], timeout: float = JOB_MS / 1000) -> list[tuple[str, int, str]]:
    """What the page shows, every 50 ms, until `until` holds of it."""
    samples, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples.append(bar(page))
        if until(samples[-1]):
            return samples
        time.sleep(0.05)
    raise AssertionError(f"the page never got there within {timeout} s: {changes(samples)}")


def changes(samples: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """The samples without repeats: what a failure message shows."""
    return list(dict.fromkeys(samples))


def final(shown: tuple[str, int, str]) -> bool:
    return shown[0] in ("succeeded", "failed", "cancelled")


def assert_climbs(values: list[int]) -> None:
    assert values, "the bar never moved"
    assert values == sorted(values), f"the bar went backwards: {values}"


@pytest.fixture
def blocker(comfy_server: ServerProcess) -> Iterator[tuple[Client, str]]:
    """Another user's long prompt, running on ComfyUI: a job submitted after it waits in ComfyUI's queue, so the page
    is watching before it starts. Cancelled at the end whatever happened, so the next test's job need not wait."""
    other = Client(comfy_server)
    job = other.submit(png_bytes(1024, 768), workflow=json.dumps(slow_prompt()))["job_id"]
    deadline = time.monotonic() + 30
    while other.http.get(f"/api/jobs/{job}").json()["status"] != "running":
        assert time.monotonic() < deadline, "the blocking prompt never ran"
        time.sleep(0.1)
    yield other, job
    other.http.delete(f"/api/jobs/{job}")


def test_the_seeds_example_runs_on_comfyui_live_and_a_reload_mid_job_resumes_it(page: Page, blocker: tuple[Client, str]) -> None:
    sockets = received(page)
    other, blocking = blocker
    job = submit_workflow(page, SEED_EXAMPLE)
    expect(page.get_by_test_id("job")).to_have_attribute("data-status", "queued", timeout=10_000)
    assert other.http.delete(f"/api/jobs/{blocking}").status_code == 202  # now the seed's example runs

    # Live: sampled while it runs, the bar climbs, and says which of ComfyUI's nodes runs; the DDColor node reports
    # nothing itself, so its share moves as an estimate, said as one.
    live = sample(page, lambda shown: ESTIMATED in shown[2] and shown[1] >= 30 or final(shown))
    running = [percent for status, percent, _ in live if status == "running"]
    assert len(set(running)) >= 3, f"the bar did not move while the job ran: {changes(live)}"
    assert running == sorted(running), f"the bar went backwards while it ran: {running}"
    sentences = [sentence for status, _, sentence in live if status == "running"]
    assert any(s.startswith(DDCOLOR_RUNNING) for s in sentences), sentences
    assert any("DDColor_Colorize" in s and ESTIMATED in s for s in sentences), sentences
    before = page.evaluate("window.__seen")
    assert_climbs(before["values"])

    # Replayable: a reload mid-job shows the same job again, its story replayed from the start, then goes on.
    page.reload()
    assert page.request.get(f"/api/jobs/{job}").json()["status"] == "running", "the job ended before the reload"
    resumed = sample(page, final)
    after = page.evaluate("window.__seen")
    assert_climbs(after["values"])
    assert after["values"][-1] == 100 and max(after["values"]) >= max(before["values"])
    assert any(s.startswith("ComfyUI is running LoadImage") for s in after["sentences"]), after["sentences"]  # replayed
    assert page.evaluate("JSON.parse(sessionStorage.getItem('oldphoto.job')).jobId") == job

    # What the server sent each socket: the whole log once from seq 1, its percentage never going back (the page
    # holds the line itself too, so the bar alone would not show a relay that goes back).
    assert len(sockets) >= 2, "no second socket after the reload"
    for frames in sockets:
        events = logged(frames, job)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), [e["seq"] for e in events]
        progress = [e["progress"] for e in events]
        assert progress == sorted(progress), f"the relay's percentage went back: {progress}"
    assert logged(sockets[-1], job)[-1]["type"] == "complete"

    # It ends complete, with the result.
    assert resumed[-1][:2] == ("succeeded", 100), resumed[-1]
    expect(page.get_by_test_id("stage-text")).to_have_text("Restoration complete")
    result = page.get_by_test_id("result-image")
    expect(result).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 320", arg=result.element_handle())
    expect(page.get_by_test_id("download")).to_be_visible()
    assert page.request.get(f"/api/jobs/{job}").json()["status"] == "succeeded"


def comfy_history(comfyui: ComfyProcess, prompt: str, timeout: float = 5) -> dict:
    """ComfyUI's history of `prompt`: it is written just after the prompt's last message."""
    deadline = time.monotonic() + timeout
    while not (history := httpx.get(f"{comfyui.url}/history/{prompt}").json()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert prompt in history, f"ComfyUI has no history of the prompt {prompt}"
    return history


def test_cancel_on_the_page_interrupts_the_prompt_on_comfyui(page: Page, comfyui: ComfyProcess) -> None:
    job = submit_workflow(page, slow_prompt(), size=(1024, 768))
    expect(page.get_by_test_id("stage-text")).to_contain_text(UPSCALER_RUNNING, timeout=JOB_MS)
    asked = time.monotonic()
    page.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("job")).to_have_attribute("data-status", "cancelled", timeout=15_000)
    took = time.monotonic() - asked
    expect(page.get_by_test_id("stage-text")).to_have_text("Cancelled")
    expect(page.get_by_test_id("cancel")).to_be_hidden()
    assert page.request.get(f"/api/jobs/{job}").json()["status"] == "cancelled"
    queue = httpx.get(f"{comfyui.url}/queue").json()
    still = {str(item[1]) for item in queue["queue_running"] + queue["queue_pending"]}
    assert job not in still, "the page says cancelled, but the prompt still runs on ComfyUI"
    history = comfy_history(comfyui, job)
    assert history[job]["status"]["status_str"] == "error", history  # interrupted, not finished
    said = [message[0] for message in history[job]["status"]["messages"]]
    assert "execution_interrupted" in said, said
    assert took < 10, took
