"""A first visit starts clean: the page asks for a session before anything that needs one, so no request is
refused and the browser's console shows no error."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def troubles_of(page: Page) -> list[str]:
    """Console errors, uncaught script errors and refused requests, as they happen."""
    troubles: list[str] = []
    page.on("console", lambda message: troubles.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: troubles.append(f"script: {error}"))
    page.on("response", lambda response: troubles.append(f"{response.status} {response.url}") if response.status >= 400 else None)
    page.on("requestfailed", lambda request: troubles.append(f"failed: {request.url}"))
    return troubles


def test_a_first_visit_and_a_second_leave_the_console_clean(browser: Browser, server: str) -> None:
    context = browser.new_context(base_url=server)
    try:
        page = context.new_page()
        troubles = troubles_of(page)
        page.goto("/")
        expect(page.get_by_test_id("recent-list")).to_be_attached()
        expect(page.locator("#recent-empty")).to_be_visible()  # the list came back: the page is booted
        page.wait_for_load_state("networkidle")
        assert not troubles, troubles

        page.reload()  # a second visit goes out with the session it has
        expect(page.locator("#recent-empty")).to_be_visible()
        page.wait_for_load_state("networkidle")
        assert not troubles, troubles
        sessions = []
        page.on("request", lambda request: sessions.append(request.url) if request.url.endswith("/api/session") else None)
        page.reload()
        page.wait_for_load_state("networkidle")
        assert not sessions, "a page with a live session asked for another"
    finally:
        context.close()
