"""The colour queries on the page: a job without colorize offers no toggle. (A colorize job's toggle, the dominance
map laid over its result and the top queries' maps: tests/browser/test_live.py, in the one job that shows everything
a person watching sees.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_page import start_restore, wait_until_done

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOADED = "img => img.complete && img.naturalWidth > 0"


def test_a_job_without_colorize_offers_no_colour_queries(page: Page, generated_photo: Path) -> None:
    start_restore(page, generated_photo, ("denoise",))
    wait_until_done(page)
    page.wait_for_timeout(500)  # time for the page's question about the maps to be answered
    expect(page.get_by_test_id("lens-toggle")).to_be_hidden()
