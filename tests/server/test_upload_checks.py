"""Upload checking that one user cannot monopolise (issue 11, item 3), against real `oldphoto serve` processes.

The attack it answers: six 24 MB JPEGs of 6,000,000 empty segments at once, each with a broken workflow. Before,
each took a single checker process 9.8 s and 880 MB behind one lock, without a time limit, and the workflow was read
only after the decode: an honest user's upload waited 47 s. Now the workflow is read first, the segment bomb is
refused by the header budget in the web process, every decode has a time limit, and one user's slow files hold at
most their share of the checker pool while others are served from the rest. Helper processes die with the server.
"""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import numpy as np
import psutil
import pytest
from PIL import Image

from tests.helpers.hostile import jpeg_segment_bomb, slow_progressive_jpeg, time_limit_for
from tests.helpers.server import ServerProcess, start_server

SECRET = "upload-checks-secret-0123456789-0123456789-abcdef"
TIMEOUT_S = 1.0  # the decode time limit of the test server, unless the slow file decodes faster here (`limit`)
BOMB_OVERHEAD_S = 0.1  # issue 11: the segment bomb is refused in under 100 ms
VICTIM_UPLOADS = 25  # per phase: under the 30 jobs a minute each user may submit
VICTIM_P99_S = 0.75  # an honest upload's p99 while another user attacks; unfair turns cost a whole time limit
# What the attack may add to the victim's p99 alone, over the same victim's p99 without it: on a machine loaded by other
# work (a second test process) the victim is slower with or without the attack, which is not the attack's doing.
VICTIM_EXTRA_S = 0.5


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def client(server: ServerProcess, user: str, address: str, timeout: float = 120) -> httpx.Client:
    """`user`'s client from its own loopback address: its own rate-limit buckets."""
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token(user)}"},
        transport=httpx.HTTPTransport(local_address=address),
        timeout=timeout,
    )


def post(http: httpx.Client, data: bytes, name: str = "photo.jpg", **fields: str) -> tuple[int, dict, float]:
    started = time.perf_counter()
    response = http.post("/api/jobs", files={"file": (name, data, "image/jpeg")}, data=fields or {"steps": "sharpen"})
    took = time.perf_counter() - started
    body = response.json()
    if response.status_code == 202:
        http.delete(f"/api/jobs/{body['job_id']}")  # spare the worker: only the check is measured here
    return response.status_code, body, took


def honest_photo() -> bytes:
    pixels = np.random.default_rng(3).integers(0, 256, (480, 640, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


def server_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "OLDPHOTO_JWT_SECRET": SECRET,
        "OLDPHOTO_USER_CONCURRENCY": "100",
        "OLDPHOTO_MODELS_DIR": str(tmp / "models"),
        **extra,
    }


@pytest.fixture(scope="module")
def slow_jpeg() -> bytes:
    return slow_progressive_jpeg(4500)  # 14 MB, 2-3 s of decoding on 2 cores: within every limit but the time limit


@pytest.fixture(scope="module")
def limit(slow_jpeg: bytes) -> float:
    """The test server's decode time limit: TIMEOUT_S, or less where the slow file decodes in under 2.5 times that."""
    return time_limit_for(slow_jpeg, TIMEOUT_S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, limit: float) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("checks")
    process = start_server(root / "data", server_env(root, OLDPHOTO_CHECK_TIMEOUT_S=str(limit)))
    yield process
    process.stop()


def checkers_of(server: ServerProcess) -> set[int]:
    return {p.pid for p in psutil.Process(server.process.pid).children() if "spawn_main" in " ".join(p.cmdline())}


# -------------------------------------------------------------------------------------------------- the bomb


def test_the_segment_bomb_is_refused_in_under_100_ms(server: ServerProcess) -> None:
    """Its whole cost beyond receiving 24 MB: compared with the same bytes refused for their workflow."""
    bomb = jpeg_segment_bomb()
    http = client(server, "bomber", "127.0.0.40")
    bombs, received = [], []
    for _ in range(3):
        status, body, took = post(http, bomb)
        assert (status, body["code"]) == (422, "invalid_image"), body
        assert "segments" in body["error"]
        bombs.append(took)
        status, body, took = post(http, bomb, workflow="not json")
        assert (status, body["code"]) == (400, "invalid_workflow"), body
        received.append(took)
    print(
        f"\n24 MB segment bomb: refused in {min(bombs) * 1000:.0f} ms (best of 3; {max(bombs) * 1000:.0f} worst); "
        f"the same bytes refused for their workflow {min(received) * 1000:.0f} ms: "
        f"the check costs {(min(bombs) - min(received)) * 1000:.0f} ms"
    )
    assert min(bombs) - min(received) < BOMB_OVERHEAD_S
    assert max(bombs) < 2.0  # it was 9.8 s of decoding, before anything else


def test_a_workflow_error_is_answered_before_any_decode(server: ServerProcess, slow_jpeg: bytes, limit: float) -> None:
    """A file whose decode runs past the time limit, with a broken workflow: if the decode came first, the answer
    would be 422 decode_timeout after the time limit, not 400 at once."""
    http = client(server, "wrong-workflow", "127.0.0.41")
    for workflow, fields in [("invalid", {"workflow": "{"}), ("unknown step", {"steps": "paint"}), ("model", {"model": "../x.pth"})]:
        status, body, took = post(http, slow_jpeg, **fields)
        assert status == 400 and body["code"] in ("invalid_workflow", "unknown_model"), (workflow, body)
        assert took < limit / 2, (workflow, took)


# ----------------------------------------------------------------------------------------- the time limit


def test_a_decode_past_the_time_limit_is_refused_and_the_pool_recovers(server: ServerProcess, slow_jpeg: bytes, limit: float) -> None:
    before = checkers_of(server)
    http = client(server, "slow", "127.0.0.42")
    status, body, took = post(http, slow_jpeg)
    assert (status, body["code"]) == (422, "decode_timeout"), body
    assert limit <= took < limit + 3, took
    # The checker that ran past the limit is gone, and another has taken its place.
    deadline = time.monotonic() + 10
    while len(checkers_of(server) - before) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = checkers_of(server)
    assert len(before - after) == 1 and len(after - before) == 1, (before, after)
    # Both checkers still work, the new one included.
    honest = client(server, "after-slow", "127.0.0.43")
    for _ in range(4):
        status, body, took = post(honest, honest_photo())
        assert status == 202, body
    assert server.process.poll() is None and "Traceback" not in server.log()


# -------------------------------------------------------------------------------------- fairness, measured


def _victim(server: ServerProcess, user: str, address: str) -> list[float]:
    photo = honest_photo()
    http = client(server, user, address)
    times = []
    for _ in range(VICTIM_UPLOADS):
        status, body, took = post(http, photo)
        assert status == 202, body
        times.append(took)
    return times


def _attack(http: httpx.Client, data: bytes, stop: threading.Event, answers: Counter[str]) -> None:
    """Send `data` again as soon as it is answered, until told to stop or rate-limited (then wait: the flood of 429s
    is the rate limiter's business, measured elsewhere, and would only measure this machine's two cores here)."""
    while not stop.is_set():
        try:
            status, body, _ = post(http, data)
        except httpx.HTTPError as exc:
            answers[type(exc).__name__] += 1
            continue
        answers[f"{status} {body.get('code', 'ok')}"] += 1
        if status == 429:
            stop.wait()


def _under_attack(server: ServerProcess, data: bytes, attacker: str, victim: str, n: int) -> tuple[list[float], Counter[str]]:
    """The victim's upload times while `attacker` keeps six uploads of `data` in flight (each user from its own address)."""
    stop, answers = threading.Event(), Counter[str]()
    http = client(server, attacker, f"127.0.0.{50 + n}")
    with ThreadPoolExecutor(6) as pool:
        attackers = [pool.submit(_attack, http, data, stop, answers) for _ in range(6)]
        time.sleep(1.0)  # the attack is under way
        try:
            times = _victim(server, victim, f"127.0.0.{20 + n}")
        finally:
            stop.set()
        for attack in attackers:
            attack.result()
    return times, answers


def _p(times: list[float], q: float) -> float:
    return float(np.percentile(times, q))


@pytest.mark.slow
def test_an_honest_upload_is_not_held_up_by_another_users_six_at_once(server: ServerProcess, slow_jpeg: bytes, limit: float) -> None:
    baseline = _victim(server, "victim-alone", "127.0.0.20")
    bombs, bomb_answers = _under_attack(server, jpeg_segment_bomb(), "bomber-1", "victim-bombs", 1)
    slow, slow_answers = _under_attack(server, slow_jpeg, "slow-1", "victim-slow", 2)
    rows = [("alone", baseline, Counter()), ("6 segment bombs at once", bombs, bomb_answers), ("6 slow files at once", slow, slow_answers)]
    print(f"\nhonest 640x480 JPEG uploads ({VICTIM_UPLOADS} each), with another user's attack running (time limit {limit:g} s):")
    for name, times, answers in rows:
        print(f"  {name:24} p50 {_p(times, 50) * 1000:5.0f} ms  p99 {_p(times, 99) * 1000:5.0f} ms  attacker got {dict(answers)}")
    assert bomb_answers["422 invalid_image"] >= 6 and slow_answers["422 decode_timeout"] >= 2
    # Under 0.75 s, or at most half a second over the victim's p99 alone where the machine is that busy (never a whole
    # time limit: an unfair turn costs that).
    allowed = max(VICTIM_P99_S, min(_p(baseline, 99) + VICTIM_EXTRA_S, limit))
    assert _p(bombs, 99) < allowed and _p(slow, 99) < allowed, (allowed, _p(baseline, 99))
    assert server.process.poll() is None and "Traceback" not in server.log()


# ------------------------------------------------------------------------------------------- no orphans


def _busy(processes: list[psutil.Process], seconds: float) -> bool:
    """True once the helper processes have spent `seconds` of CPU between them (a decode is under way)."""
    total = 0.0
    for process in processes:
        try:
            total += sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total >= seconds


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_helper_process_outlives_the_server(sig: signal.Signals, tmp_path: Path) -> None:
    """Stopped while a checker decodes a file that takes ~10 s: every process the server started (checkers, the
    worker, multiprocessing's resource tracker) is gone within a second of the server's exit."""
    env = server_env(tmp_path, OLDPHOTO_CHECK_TIMEOUT_S="60", OLDPHOTO_MAX_PIXELS="80000000", OLDPHOTO_MAX_UPLOAD_MB="60")
    server = start_server(tmp_path / "data", env)
    data = slow_progressive_jpeg(8000)  # 64 megapixels, 45 MB: longer than uvicorn's 5 s of graceful shutdown
    try:
        helpers = psutil.Process(server.process.pid).children(recursive=True)
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in helpers)
        upload = threading.Thread(target=lambda: _ignore_errors(post, client(server, "big", "127.0.0.60"), data), daemon=True)
        upload.start()
        deadline = time.monotonic() + 60
        while not _busy(helpers, cpu_before + 1.0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _busy(helpers, cpu_before + 1.0), "the decode never started"
        helpers = psutil.Process(server.process.pid).children(recursive=True)
        assert len(helpers) >= 3  # two checkers, a worker (and the resource tracker)
    finally:
        started = time.monotonic()
        server.stop(sig)
        stopped = time.monotonic() - started
    deadline = time.monotonic() + 1.0
    alive = helpers
    while alive and time.monotonic() < deadline:
        alive = [p for p in helpers if _running(p)]
        time.sleep(0.05)
    print(f"\n{sig.name}: the server exited in {stopped:.1f} s; helpers left after 1 s: {[p.pid for p in alive]}")
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


def _ignore_errors(fn, *args) -> None:  # noqa: ANN001 - test helper
    try:
        fn(*args)
    except (httpx.HTTPError, json.JSONDecodeError):
        pass  # the server went away under it, as intended


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
