"""What a person watching a running job sees besides the bar (issue 13): its expected time left, and a small live
chart of the worker's memory and speed that moves while it runs and sums the run up when it ends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_page import JOB_MS, start_restore, wait_until_done

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The chart shows, has drawn both lines (pixels near the memory and speed colours: the lines are antialiased) and the
# job still runs.
CHART_DRAWN_WHILE_RUNNING = """() => {
  const figure = document.querySelector("[data-testid=live-chart]");
  const canvas = figure.querySelector("canvas");
  if (figure.hidden || canvas.hidden || canvas.width === 0 || document.getElementById("job").dataset.status !== "running") return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const near = (i, r, g, b) => Math.abs(pixels[i] - r) + Math.abs(pixels[i + 1] - g) + Math.abs(pixels[i + 2] - b) < 60;
  let memory = 0, speed = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] < 160) continue;
    if (near(i, 0x7c, 0x5c, 0xc4)) memory++;
    if (near(i, 0xd9, 0x82, 0x2b)) speed++;
  }
  return memory > 10 && speed > 10;
}"""


def test_the_eta_and_a_live_chart_of_memory_and_speed_show_while_the_job_runs_and_its_summary_after(page: Page, generated_photo: Path) -> None:
    start_restore(page, generated_photo, ("denoise", "colorize", "upscale", "sharpen"))
    eta = page.get_by_test_id("eta")
    expect(eta).to_have_text(re.compile(r"About \d+ s left"), timeout=JOB_MS)
    page.wait_for_function(CHART_DRAWN_WHILE_RUNNING, timeout=JOB_MS)
    caption = page.get_by_test_id("live-chart-text")
    expect(caption).to_contain_text("MB (peak")
    expect(caption).to_contain_text("/s")
    first = caption.text_content()
    page.wait_for_function(
        "text => document.querySelector('[data-testid=live-chart-text]').textContent !== text", arg=first, timeout=JOB_MS
    )  # it moves: a new sample a second

    wait_until_done(page)
    expect(eta).to_be_hidden()
    expect(page.get_by_test_id("live-chart-canvas")).to_be_hidden()
    expect(caption).to_have_text(re.compile(r"Peak memory \d+ MB · .* s in all"))
