"""What a person watching a job sees besides the bar (issue 13), in one job: its picture taking shape (previews), its
expected time left, a small live chart of the worker's memory and speed that moves while it runs and sums the run up
when it ends, and then the colour queries over the result."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_attention import LOADED
from tests.browser.test_page import JOB_MS, start_restore, wait_until_done
from tests.browser.test_previews import ALL_STEPS, PREVIEW_WHILE_RUNNING

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


def test_the_picture_takes_shape_with_an_eta_and_a_live_chart_and_the_colour_queries_open_over_the_result(
    page: Page, generated_photo: Path, screenshot: Callable[[str], None]
) -> None:
    start_restore(page, generated_photo, ALL_STEPS)
    page.wait_for_function(PREVIEW_WHILE_RUNNING, timeout=JOB_MS)
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
    screenshot("running")

    wait_until_done(page)
    expect(eta).to_be_hidden()
    expect(page.get_by_test_id("live-chart-canvas")).to_be_hidden()
    expect(caption).to_have_text(re.compile(r"Peak memory \d+ MB · .* s in all"))

    toggle = page.get_by_test_id("lens-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    overlay = page.get_by_test_id("lens-overlay")
    page.wait_for_function(f"() => ({LOADED})(document.getElementById('lens-overlay'))", timeout=10_000)
    # Laid over the result: the same box, so each area of the map covers the part of the photo it speaks of.
    shown, result = overlay.bounding_box(), page.get_by_test_id("result-image").bounding_box()
    assert shown and result and abs(shown["width"] - result["width"]) < 2 and abs(shown["height"] - result["height"]) < 2
    expect(page.get_by_test_id("lens-query")).to_have_count(6)
    page.wait_for_function(f"() => [...document.querySelectorAll('.lens-map')].every({LOADED})", timeout=10_000)
    screenshot("queries")
    toggle.click()
    expect(overlay).to_be_hidden()
