"""Browser tests: a real `oldphoto serve` process and Debian's headless Chromium driven by Playwright.

Chromium comes from the distribution (`apt-get install chromium`), never from `playwright install`: that download
cannot happen here. Without it the tests skip on a developer's machine and fail in CI (CI=true), where a silent
skip would hide that the page went untested.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")  # Playwright's sync API holds an event loop: end it with the browser tests
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests (apt-get install chromium)", pytrace=False)
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, shared_models_dir: Path) -> Iterator[str]:
    """The base URL of a real server with its own data dir and the tiny random-weight DDColor checkpoint."""
    from tests.helpers.server import running_server

    env = {
        "OLDPHOTO_MODEL": str(tiny_checkpoint),
        "OLDPHOTO_MODELS_DIR": str(shared_models_dir),
        "OLDPHOTO_DEVICE": "cpu",
        # The page is under test, not the colours: a smaller model input keeps each job to seconds on a CPU.
        "OLDPHOTO_INPUT_SIZE": "256",
    }
    with running_server(tmp_path_factory.mktemp("server-data"), env) as process:
        yield process.url


@pytest.fixture
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    """The window size; a test asks for another with `@pytest.mark.parametrize("viewport", [...], indirect=True)`."""
    return getattr(request, "param", DESKTOP)


def _old_photo(path: Path, size: tuple[int, int]) -> Path:
    """A grey, grainy "old photograph" drawn from scratch, so the suite runs without ../shared/photos."""
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    image = Image.linear_gradient("L").resize(size).point(lambda v: 60 + v // 2)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.30, height * 0.15, width * 0.55, height * 0.60), fill=200)  # a face
    draw.rectangle((width * 0.25, height * 0.55, width * 0.60, height), fill=45)  # a dark coat
    draw.rectangle((width * 0.70, height * 0.20, width * 0.90, height * 0.80), fill=150)  # a window
    grain = Image.effect_noise(size, 40)
    Image.blend(image.filter(ImageFilter.GaussianBlur(1)), grain, 0.12).save(path)
    return path


@pytest.fixture(scope="session")
def generated_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """With steps colorize + upscale its job takes several seconds on a CPU (the upscale mostly): time enough to
    cancel, reload or drop the socket in the middle of it."""
    return _old_photo(tmp_path_factory.mktemp("images") / "grandparents.png", (640, 420))


def save_screenshot(page: Page, name: str) -> None:
    """test-artifacts/browser/<name>.png, with transitions finished so the bar shows what it says."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, animations="disabled")


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Saves a screenshot of a moment within a test, as <test>-<moment>.png."""
    return lambda moment: save_screenshot(page, f"{request.node.name}-{moment}")


@pytest.fixture
def page(browser: Browser, server: str, viewport: dict[str, int], request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (so a fresh anonymous user) on the page; fails the test on any uncaught script
    error, and leaves a screenshot of how the page ended in test-artifacts/browser/<test>.png.
    Jobs the test left running are cancelled, so the next test's job is not queued behind them."""
    context = browser.new_context(viewport=viewport, base_url=server, accept_downloads=True)
    page = context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto("/")
    yield page
    save_screenshot(page, request.node.name)
    for job in context.request.get("/api/jobs").json():
        if job["status"] in ("queued", "running"):
            context.request.delete(f"/api/jobs/{job['job_id']}")
    context.close()
    assert not script_errors, f"uncaught errors in the page: {script_errors}"
