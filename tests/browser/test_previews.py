"""Live previews on the page: the job's latest picture fills the photo frame while it runs, and a reload shows the
latest one again (the page resumes from seq 0; the log names every preview, the newest last)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_page import JOB_MS, shown_job_id, start_restore, wait_until_done

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALL_STEPS = ("denoise", "colorize", "upscale", "sharpen")
# The preview shows, has loaded a real picture (not a broken one) and the job is still running.
PREVIEW_WHILE_RUNNING = """() => {
  const img = document.getElementById("preview-image");
  return !img.hidden && img.complete && img.naturalWidth > 0 && document.getElementById("job").dataset.status === "running"
    && /^\\/api\\/jobs\\/[^/]+\\/preview\\?v=\\d+$/.test(img.getAttribute("src"));
}"""


def frame_number(page: Page) -> int:
    src = page.get_by_test_id("preview-image").get_attribute("src") or ""
    match = re.search(r"\?v=(\d+)$", src)
    assert match, src
    return int(match.group(1))


def test_the_preview_fills_the_frame_while_the_job_runs_and_a_reload_shows_the_latest(page: Page, generated_photo: Path) -> None:
    start_restore(page, generated_photo, ALL_STEPS)
    page.wait_for_function(PREVIEW_WHILE_RUNNING, timeout=JOB_MS)
    preview = page.get_by_test_id("preview-image")
    frame, shown = page.get_by_test_id("compare").bounding_box(), preview.bounding_box()
    assert frame and shown and shown["width"] > frame["width"] * 0.9, "the preview does not fill the photo frame"
    natural = preview.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert max(natural) <= 256, natural
    before = frame_number(page)

    page.reload()
    job_id = shown_job_id(page)
    assert page.request.get(f"/api/jobs/{job_id}").json()["status"] == "running", "the job ended before the reload"
    page.wait_for_function(PREVIEW_WHILE_RUNNING, timeout=JOB_MS)
    assert frame_number(page) >= before, "the reload showed an older preview"

    wait_until_done(page)
    expect(preview).to_be_hidden()
    expect(page.get_by_test_id("result-image")).to_be_visible()
