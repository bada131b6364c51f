"""The colour queries on the page: a finished colorize job offers a toggle over its result that lays the dominance
map on it and shows the queries that matter most, with their maps; a job without colorize offers none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_page import JOB_MS, start_restore, wait_until_done

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOADED = "img => img.complete && img.naturalWidth > 0"


def test_the_colour_queries_toggle_lays_the_map_over_the_result(page: Page, generated_photo: Path, screenshot: Callable[[str], None]) -> None:
    start_restore(page, generated_photo, ("colorize",))
    wait_until_done(page)
    toggle = page.get_by_test_id("lens-toggle")
    expect(toggle).to_be_visible(timeout=JOB_MS)
    expect(toggle).to_have_attribute("aria-pressed", "false")
    overlay = page.get_by_test_id("lens-overlay")
    expect(overlay).to_be_hidden()

    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(overlay).to_be_visible()
    page.wait_for_function(f"() => ({LOADED})(document.getElementById('lens-overlay'))", timeout=10_000)
    # Laid over the result: the same box, so each area of the map covers the part of the photo it speaks of.
    shown, result = overlay.bounding_box(), page.get_by_test_id("result-image").bounding_box()
    assert shown and result and abs(shown["width"] - result["width"]) < 2 and abs(shown["height"] - result["height"]) < 2
    queries = page.get_by_test_id("lens-query")
    expect(queries).to_have_count(6)
    page.wait_for_function(f"() => [...document.querySelectorAll('.lens-map')].every({LOADED})", timeout=10_000)
    expect(queries.first).to_contain_text("%")
    screenshot("on")

    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(overlay).to_be_hidden()
    expect(page.get_by_test_id("lens-panel")).to_be_hidden()


def test_a_job_without_colorize_offers_no_colour_queries(page: Page, generated_photo: Path) -> None:
    start_restore(page, generated_photo, ("denoise",))
    wait_until_done(page)
    page.wait_for_timeout(500)  # time for the page's question about the maps to be answered
    expect(page.get_by_test_id("lens-toggle")).to_be_hidden()
