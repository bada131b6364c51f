"""Hostile jobs (issue 11, item 1) against a real `oldphoto serve`: refused at admission with 422 `over_budget` and
the numbers, before any decode, and never queued; honest jobs go through. Default caps, as an operator gets them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from oldphoto.engine.cost import Budget
from oldphoto.settings import Settings
from oldphoto.wiring import budget
from tests.helpers.hostile import BUDGET_CASES, OVER_BUDGET, OVER_RESULT, BudgetCase, slow_progressive_jpeg
from tests.helpers.server import ServerProcess, start_server
from tests.server.test_upload_checks import client, honest_photo

TIMEOUT_S = 1.0  # the test server's decode time limit; the slow JPEG takes about 3 s to decode
FAST_S = 2.0  # an over-budget answer comes from the header and arithmetic: well under this, whatever the upload


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("budget")
    env = {
        "OLDPHOTO_JWT_SECRET": "upload-checks-secret-0123456789-0123456789-abcdef",
        "OLDPHOTO_USER_CONCURRENCY": "100",
        "OLDPHOTO_MODELS_DIR": str(root / "models"),
        "OLDPHOTO_CHECK_TIMEOUT_S": str(TIMEOUT_S),
    }
    process = start_server(root / "data", env)
    yield process
    process.stop()


def post(http: httpx.Client, data: bytes, **fields: str) -> tuple[int, dict, float]:
    started = time.perf_counter()
    response = http.post("/api/jobs", files={"file": ("photo.png", data, "image/png")}, data=fields)
    took = time.perf_counter() - started
    body = response.json()
    if response.status_code == 202:
        http.delete(f"/api/jobs/{body['job_id']}")  # spare the worker: only the admission is tested
    return response.status_code, body, took


@pytest.mark.parametrize("case", BUDGET_CASES, ids=lambda c: c.name)
def test_each_hostile_job_is_refused_fast_with_the_numbers(server: ServerProcess, case: BudgetCase) -> None:
    http = client(server, f"budget-{case.name}", "127.0.0.60")
    status, body, took = post(http, case.data, workflow=case.workflow)
    assert (status, body["code"]) == (422, OVER_BUDGET), body
    assert case.over in body["error"], body["error"]
    numbers = body["budget"]
    assert numbers["max_result_pixels"] == Budget().max_result_pixels and numbers["max_memory_mb"] == Budget().max_memory_mb
    assert numbers["max_seconds"] == Budget().max_seconds
    assert numbers["memory_mb"] > 0 and numbers["seconds"] > 0 and numbers["result_pixels"] > 0
    assert [n["type"] for n in numbers["nodes"]][0] == "LoadImage"
    assert took < FAST_S, took
    assert http.get("/api/jobs").json() == []  # nothing was queued
    assert server.process.poll() is None


def test_the_budget_is_judged_before_any_decode(server: ServerProcess) -> None:
    """A file whose decode outlasts the time limit, with a workflow over budget: were the decode first, the answer
    would be 422 decode_timeout after the limit, not over_budget at once."""
    slow = slow_progressive_jpeg(4500)  # 20 MP, valid; two x2 upscales make 324 MP
    http = client(server, "budget-before-decode", "127.0.0.61")
    status, body, took = post(http, slow, steps="upscale,upscale")
    assert (status, body["code"]) == (422, OVER_BUDGET), body
    assert OVER_RESULT in body["error"] and "18000x18000" in body["error"]
    assert took < TIMEOUT_S / 2, took


def test_honest_jobs_are_admitted(server: ServerProcess) -> None:
    http = client(server, "budget-honest", "127.0.0.62")
    for steps in ("colorize", "denoise,colorize,upscale,sharpen"):
        status, body, _ = post(http, honest_photo(), steps=steps)
        assert status == 202, body


def test_the_caps_are_settings() -> None:
    assert budget(Settings()) == Budget()
    chosen = Settings(max_result_pixels=1000, max_job_memory_mb=2000, max_job_seconds=30)
    assert budget(chosen) == Budget(1000, 2000, 30.0)


def test_the_error_shape_keeps_error_and_code_first_class(server: ServerProcess) -> None:
    """The numbers come beside the SPEC shape, never instead of it: `error` and `code` are strings as everywhere."""
    case = next(c for c in BUDGET_CASES if c.name == "three_x4_upscales_of_128")
    http = client(server, "budget-shape", "127.0.0.63")
    status, body, _ = post(http, case.data, workflow=case.workflow)
    assert status == 422 and isinstance(body["error"], str) and body["code"] == OVER_BUDGET
    assert set(body) == {"error", "code", "budget"}
