"""The progress protocol of SPEC against a real server and real WebSocket clients."""

from __future__ import annotations

import io
import json
import threading

import httpx
from PIL import Image

from tests.helpers.server import ServerProcess
from tests.server.conftest import Client, png_bytes, read_until_final, recorded

SEED_STAGE_ORDER = ["upload", "queued", "preprocess", "load_model", "inference", "postprocess", "complete"]


def test_colorize_job_reports_every_stage_in_order(client: Client) -> None:
    job = client.submit(png_bytes(120, 80))
    events = recorded(client.follow(job["job_id"]))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    stages = [e["stage"] for e in events]
    first_seen = list(dict.fromkeys(stages))
    assert first_seen == SEED_STAGE_ORDER
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100
    assert all(e["message"] for e in events)
    inference = [e for e in events if e["stage"] == "inference"]
    assert len(inference) > 5, "inference should move the bar block by block"
    assert {e["source"] for e in events if e["stage"] in ("preprocess", "inference")} == {"colorize"}
    done = events[-1]
    assert done["type"] == "complete" and done["result_url"] == f"/results/{job['job_id']}.png"
    result = client.http.get(done["result_url"])
    assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(result.content)).size == (120, 80)


def test_two_clients_on_one_job_see_the_same_sequence(server: ServerProcess, client: Client) -> None:
    job = client.submit(png_bytes(100, 70, seed=1))
    seen: list[list[dict]] = [[], []]

    def watch(i: int) -> None:
        seen[i] = recorded(client.follow(job["job_id"]))

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    strip = [[(e["seq"], e["type"], e["stage"], e["progress"]) for e in events] for events in seen]
    assert strip[0] == strip[1] and strip[0][-1][1] == "complete"


def test_resume_after_disconnect_gives_every_event_exactly_once(client: Client) -> None:
    job = client.submit(png_bytes(110, 90, seed=2))
    with client.socket(f"?job_id={job['job_id']}") as ws:
        first = [json.loads(ws.recv(timeout=60)) for _ in range(4)]
    last_seq = first[-1]["seq"]
    rest = client.follow(job["job_id"], after_seq=last_seq)
    seqs = [e["seq"] for e in recorded(first + rest)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1]["type"] == "complete"


def test_subscribe_message_and_ping_on_one_connection(client: Client) -> None:
    jobs = [client.submit(png_bytes(64, 64, seed=s), steps="sharpen")["job_id"] for s in (3, 4)]
    with client.socket() as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
        for job_id in jobs:
            ws.send(json.dumps({"type": "subscribe", "job_id": job_id, "after_seq": 0}))
        finals: dict[str, list[int]] = {j: [] for j in jobs}
        done: set[str] = set()
        while done != set(jobs):
            event = json.loads(ws.recv(timeout=60))
            finals[event["job_id"]].append(event["seq"])
            if event["type"] == "complete":
                done.add(event["job_id"])
    for seqs in finals.values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_cancel_over_the_websocket(client: Client) -> None:
    job = client.submit(png_bytes(400, 300, seed=5), steps="colorize,upscale")
    with client.socket(f"?job_id={job['job_id']}") as ws:
        while json.loads(ws.recv(timeout=60))["stage"] != "inference":
            pass
        ws.send(json.dumps({"type": "cancel", "job_id": job["job_id"]}))
        events = read_until_final(ws, 30)
    assert events[-1]["type"] == "cancelled"
    status = client.http.get(f"/api/jobs/{job['job_id']}").json()
    assert status["status"] == "cancelled" and status["result_url"] is None
    assert client.http.get(f"/results/{job['job_id']}.png").status_code == 404
    again = client.http.delete(f"/api/jobs/{job['job_id']}")
    assert again.status_code == 202, "cancelling twice is harmless"


def test_sse_gives_the_same_events_as_the_websocket(client: Client) -> None:
    job = client.submit(png_bytes(80, 60, seed=6), steps="sharpen")
    ws_events = client.follow(job["job_id"])
    sse_events = []
    with client.http.stream("GET", f"/api/jobs/{job['job_id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["seq"] == event_id
                sse_events.append(data)
    assert [(e["seq"], e["type"], e["stage"], e["progress"]) for e in sse_events] == [
        (e["seq"], e["type"], e["stage"], e["progress"]) for e in ws_events
    ]
    resumed = []
    with client.http.stream("GET", f"/api/jobs/{job['job_id']}/events", headers={"Last-Event-ID": "3"}) as response:
        resumed = [json.loads(line[6:])["seq"] for line in response.iter_lines() if line.startswith("data: ")]
    assert resumed == [e["seq"] for e in ws_events if e["seq"] > 3]


def test_messages_follow_the_requested_language(client: Client) -> None:
    job = client.submit(png_bytes(64, 48, seed=7))
    events = client.follow(job["job_id"], lang="zh-CN")
    by_stage = {e["stage"]: e["message"] for e in events if e["type"] != "queued"}
    assert by_stage["upload"] == "图像已上传，准备处理"
    assert by_stage["complete"] == "修复完成"
    assert by_stage["postprocess"] == "后处理完成，生成彩色图像"


def test_model_missing_is_an_error_event_not_a_traceback(tmp_path, tiny_checkpoint) -> None:  # noqa: ANN001
    from tests.helpers.server import running_server

    env = {"OLDPHOTO_MODEL": "ddcolor_paper_tiny", "OLDPHOTO_MODELS_DIR": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    with running_server(tmp_path / "data", env) as server:
        client = Client(server)
        job = client.submit(png_bytes(64, 64))
        events = client.follow(job["job_id"])
    error = events[-1]
    assert error["type"] == "error" and error["progress"] == 0 and error["code"] == "model_missing"
    assert "oldphoto models pull" in error["error"]


def test_rest_errors_are_json_with_codes(server: ServerProcess, client: Client) -> None:
    assert httpx.get(f"{server.url}/api/jobs").status_code == 401
    missing = client.http.get("/api/jobs/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    text = client.http.post("/api/jobs", files={"file": ("photo.jpg", b"hello, this is text")})
    assert text.status_code == 415 and text.json()["code"] == "unsupported_format"
    bad = client.http.post("/api/jobs", files={"file": ("p.png", png_bytes())}, data={"workflow": json.dumps({"nodes": [{"id": "x", "type": "Nope"}]})})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_workflow" and "'x'" in bad.json()["error"]
    jobs = client.http.get("/api/jobs").json()
    assert isinstance(jobs, list)
    assert client.http.get("/api/models").json()["models"]
    assert "oldphoto_queue_depth" in client.http.get("/metrics").text
