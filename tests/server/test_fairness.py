"""Fairness that survives free sessions (issue 11, item 4), against a real `oldphoto serve`: the anonymous sessions
of one client address share one user's room and one user's turns; a named user, or the other setting, does not."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.images import png_bytes
from tests.helpers.server import ServerProcess, start_server

FINAL = {"succeeded", "failed", "cancelled"}
HOLD = json.dumps(
    {
        "1": {"class_type": "LoadImage", "inputs": {}},
        "2": {"class_type": "Pause", "inputs": {"image": ["1", 0], "seconds": 30}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
    }
)


def start(tmp_path: Path, share: str) -> ServerProcess:
    env = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_WORKERS": "1", "OLDPHOTO_USER_CONCURRENCY": "3", "OLDPHOTO_ANONYMOUS_SHARE": share}
    return start_server(tmp_path / share, env)


@pytest.fixture(scope="module")
def by_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start(tmp_path_factory.mktemp("fair"), "address")
    yield server
    server.stop()


def session(server: ServerProcess, address: str) -> httpx.Client:
    """A fresh anonymous session (a user of its own) from a loopback `address`."""
    client = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)
    token = client.post("/api/session").json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def submit(client: httpx.Client) -> httpx.Response:
    return client.post("/api/jobs", files={"file": ("photo.png", png_bytes(), "image/png")}, data={"workflow": HOLD})


def test_six_sessions_from_one_address_get_one_users_room_and_turns(by_address: ServerProcess) -> None:
    crowd = [session(by_address, "127.0.40.2") for _ in range(6)]
    answers = [submit(client) for client in crowd]  # the first runs, two wait: the address's three
    assert [a.status_code for a in answers[:3]] == [202] * 3
    refused = answers[3:]
    assert all(a.status_code == 429 and a.json()["code"] == "address_limit" and "Retry-After" in a.headers for a in refused)
    assert "sign in" in refused[0].json()["error"]
    neighbour = session(by_address, "127.0.40.3")
    place = submit(neighbour).json()["position"]
    assert place == 2  # the other address's first job goes before the crowd's second waiting one: one lane each
    for client in [*crowd, neighbour]:
        for job in client.get("/api/jobs").json():
            if job["status"] not in FINAL:
                client.delete(f"/api/jobs/{job['job_id']}")


def test_with_sessions_as_users_each_session_has_its_own_room(tmp_path: Path) -> None:
    server = start(tmp_path, "session")
    try:
        crowd = [session(server, "127.0.41.2") for _ in range(4)]
        assert [submit(client).status_code for client in crowd] == [202] * 4
    finally:
        server.stop()


def pause(seconds: float) -> str:
    return HOLD.replace('"seconds": 30', f'"seconds": {seconds}')


def victim_wait(server: ServerProcess, crowd_address: str, victim_address: str) -> tuple[int, float]:
    """Six free sessions from one address each ask for three 0.8 s jobs; then someone from another address asks for
    one. (Jobs the crowd got admitted, seconds the other person waited for theirs to start.)"""
    crowd = [session(server, crowd_address) for _ in range(6)]
    admitted = sum(
        client.post("/api/jobs", files={"file": ("p.png", png_bytes(), "image/png")}, data={"workflow": pause(0.8)}).status_code == 202
        for client in crowd
        for _ in range(3)
    )
    victim = session(server, victim_address)
    asked = time.monotonic()
    job = victim.post("/api/jobs", files={"file": ("p.png", png_bytes(), "image/png")}, data={"workflow": pause(0.1)}).json()
    while victim.get(f"/api/jobs/{job['job_id']}").json()["status"] == "queued":
        time.sleep(0.05)
    waited = time.monotonic() - asked
    for client in crowd:
        for listed in client.get("/api/jobs").json():
            if listed["status"] not in FINAL:
                client.delete(f"/api/jobs/{listed['job_id']}")
    return admitted, waited


@pytest.mark.slow
def test_beside_a_crowd_of_free_sessions_a_person_from_elsewhere_waits_for_one_of_their_jobs_not_all(tmp_path: Path) -> None:
    """The attack and the victim side by side, with each setting (numbers in docs/security.md, Limits)."""
    results = {}
    for share in ("address", "session"):
        server = start(tmp_path, share)
        try:
            results[share] = victim_wait(server, "127.0.42.2", "127.0.42.3")
        finally:
            server.stop()
    print(f"crowd admitted / victim waited: {results}")
    (admitted, waited), (admitted_apart, waited_apart) = results["address"], results["session"]
    assert admitted == 3 and admitted_apart == 18
    assert waited < 2.6  # behind the crowd's running job and the one job ahead in line (0.8 s each)
    assert waited_apart > 2 * waited  # six lanes ahead instead of one
