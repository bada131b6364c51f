"""What the ComfyUI backend adds: one job through this service against the same prompt sent straight to ComfyUI.

One real ComfyUI (../shared/comfyui, its own venv, the random-weight models of `tests/helpers/comfyui.py`) and one
real `oldphoto serve` with `OLDPHOTO_COMFYUI_URL` pointing at it. Each job is timed by the client, as a person
waits for it, from the first byte sent to the result's last byte received:

  * direct:  open ComfyUI's `/ws?clientId=...`, `POST /upload/image`, `POST /prompt`, wait on the socket for this
             prompt's `execution_success` (its `executed` names the saved image), `GET /view` of that image;
  * service: `POST /api/jobs` (multipart upload of the same photo), follow `/ws/progress?job_id=...` until
             `complete`, `GET /results/{id}.png`.

The prompt sent direct is the one the service sent for its warm-up job, read back from ComfyUI's `/history`
(only the uploaded file's name and the output prefix differ), so both run the same nodes. Each job uploads under
a fresh name, so ComfyUI's cache never skips a node either way (the model loaders stay cached, both ways).

Workloads: the seed's example workflow (LoadImage -> DDColor -> SaveImage, the random-weight tiny checkpoint) at
model input size 256 on a small photo, and ComfyUI's core upscale prompt (`UpscaleModelLoader` +
`ImageUpscaleWithModel`, a compact x2 model) on a photo of a few 512-px tiles. A first job each way loads the
models (warm-up, not counted); then the runs alternate, direct and service, so drift hits both.

Also counted: the messages a client got each way (ComfyUI's own frames on the direct client's socket, from its
connection to `execution_success`, against this service's events until `complete`), and the time from the start
of the job to the first message about it each way (direct: the first naming its prompt_id; service: the first
event of the job), and to the first message saying it runs (direct: `execution_start`; service: the first event
whose stage is neither `upload` nor `queued`).

Where the time went, by ComfyUI's own clock (its `/history` timestamps of `execution_start` and `execution_success`,
read after each job): `before` (the client's first byte to the prompt starting on ComfyUI: the upload, and through
this service also its inspection of the photo, the job's record, its queue, the copy to ComfyUI and the check of
the prompt), `ComfyUI runs` (the nodes executing: the same work both ways, so its difference is noise unless the
service's CPU slows ComfyUI), `after` (ComfyUI done to the result received: through this service also its fetch of
the result from `/view`, its copy on disk and the `complete` event). The line under the table sets the service's
own part (before + after) against the difference of the wall medians. CPU: user + system seconds of the ComfyUI
process and of the `oldphoto serve` process over each job.

Run: .venv/bin/python benchmarks/comfyui_overhead.py [--runs 8] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402
import websockets  # noqa: E402

from benchmarks._common import load_avg, median, percentile, photo_bytes, print_header, scratch_dir, table  # noqa: E402
from oldphoto.comfy.prompt import for_job  # noqa: E402

FINAL = frozenset({"complete", "error", "cancelled"})
WAITING_STAGES = frozenset({"upload", "queued"})
TIMEOUT_S = 120.0


# The seed's example workflow (tests/helpers/workflows.py SEED_EXAMPLE), at model input size `size`.
def seed_example(size: int) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "load_image", "type": "LoadImage", "widgets_values": ["input_image.png"]},
            {
                "id": "ddcolor_node",
                "type": "DDColor",
                "inputs": {"image": "load_image.image"},
                "widgets_values": ["realesr-animevideov3", size, False],
            },
            {"id": "save_output", "type": "SaveImage", "inputs": {"images": "ddcolor_node.output"}},
        ],
        "links": [[1, "load_image", 0, "ddcolor_node", 0], [2, "ddcolor_node", 0, "save_output", 0]],
    }


def upscale_prompt(model: str) -> dict[str, Any]:
    """ComfyUI's core upscale nodes in its API form (tests/comfy/test_backend.py `upscale_prompt`)."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "anything.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }


def resized_png(data: bytes, width: int) -> tuple[bytes, tuple[int, int]]:
    from PIL import Image

    picture = Image.open(io.BytesIO(data)).convert("RGB")
    if width < picture.width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue(), picture.size


def tiles(size: tuple[int, int], tile: int = 512, overlap: int = 32) -> int:
    """How many tiles ComfyUI's ImageUpscaleWithModel cuts a picture into (its first try: 512 px, 32 overlap)."""
    step = tile - overlap
    return -(-max(size[1] - overlap, 1) // step) * -(-max(size[0] - overlap, 1) // step)


# -- the two ways -----------------------------------------------------------------------------------------------


class Direct:
    """The prompt sent straight to ComfyUI, as a script using its API would."""

    def __init__(self, url: str, prompt: dict[str, Any], photo: bytes) -> None:
        self.url = url
        self.prompt = prompt
        self.photo = photo

    async def run(self, http: httpx.AsyncClient) -> dict[str, Any]:
        client_id = uuid.uuid4().hex
        name = f"bench-{uuid.uuid4().hex}.png"
        frames = 0
        first = running = None
        images: list[dict[str, Any]] = []
        kinds: Counter[str] = Counter()
        epoch, started = time.time(), time.perf_counter()
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        async with websockets.connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30) as ws:
            answer = (
                (await http.post("/upload/image", files={"image": (name, self.photo, "image/png")}, data={"overwrite": "true"}))
                .raise_for_status()
                .json()
            )
            image = f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]
            prompt_id = str(uuid.uuid4())
            body = {"prompt": for_job(self.prompt, image, prompt_id), "prompt_id": prompt_id, "client_id": client_id}
            (await http.post("/prompt", json=body)).raise_for_status()
            while True:
                frame = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
                frames += 1
                if isinstance(frame, bytes):
                    kinds["(binary)"] += 1
                    continue  # a preview (none for these nodes)
                message = json.loads(frame)
                kinds[str(message.get("type"))] += 1
                data = message.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue  # `status` broadcasts (queue length), counted as received
                now = time.perf_counter() - started
                first = now if first is None else first
                kind = message.get("type")
                if kind == "execution_start":
                    running = now if running is None else running
                elif kind == "executed":
                    images.extend(i for i in (data.get("output") or {}).get("images", []) if i.get("type") == "output")
                elif kind in ("execution_error", "execution_interrupted"):
                    raise RuntimeError(f"ComfyUI: {message}")
                elif kind == "execution_success":
                    break
        if not images:
            raise RuntimeError("ComfyUI said no saved image")
        saved = images[-1]
        result = await http.get("/view", params={"filename": saved["filename"], "subfolder": saved.get("subfolder", ""), "type": "output"})
        result.raise_for_status()
        wall = time.perf_counter() - started
        return {
            "wall": wall,
            "events": frames,
            "first": first,
            "running": running,
            "bytes": len(result.content),
            "kinds": dict(kinds),
            "prompt_id": prompt_id,
            "epoch": epoch,
        }


class ViaService:
    """The same job through this service: REST, its progress socket, its result."""

    def __init__(self, url: str, workflow: str, photo: bytes) -> None:
        self.url = url
        self.workflow = workflow
        self.photo = photo
        self.job_ids: list[str] = []

    async def run(self, http: httpx.AsyncClient) -> dict[str, Any]:
        # A fresh session each job (outside the timing), so no per-user limit is ever in the way.
        token = (await http.post("/api/session")).raise_for_status().json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        events = 0
        first = running = None
        kinds: Counter[str] = Counter()
        epoch, started = time.time(), time.perf_counter()
        answer = await http.post(
            "/api/jobs", headers=auth, files={"file": ("photo.png", self.photo, "image/png")}, data={"workflow": self.workflow}
        )
        if answer.status_code != 202:
            raise RuntimeError(f"submit answered {answer.status_code}: {answer.text}")
        job_id = answer.json()["job_id"]
        self.job_ids.append(job_id)
        ws_url = self.url.replace("http", "ws", 1) + f"/ws/progress?job_id={job_id}"
        async with websockets.connect(ws_url, subprotocols=["bearer", token], open_timeout=30) as ws:  # type: ignore[list-item]
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                events += 1
                kinds[f"{event['type']}/{event.get('stage')}"] += 1
                now = time.perf_counter() - started
                first = now if first is None else first
                if running is None and event.get("stage") not in WAITING_STAGES:
                    running = now
                if event["type"] in FINAL:
                    if event["type"] != "complete":
                        raise RuntimeError(f"job ended with {event}")
                    break
        result = await http.get(f"/results/{job_id}.png", headers=auth)
        result.raise_for_status()
        wall = time.perf_counter() - started
        return {
            "wall": wall,
            "events": events,
            "first": first,
            "running": running,
            "bytes": len(result.content),
            "kinds": dict(kinds),
            "prompt_id": job_id,
            "epoch": epoch,
        }


# -- the run ----------------------------------------------------------------------------------------------------


async def phases(comfy: httpx.AsyncClient, result: dict[str, Any]) -> None:
    """Where the job's wall time went, from ComfyUI's own clock (its history's `execution_start` and
    `execution_success` timestamps, ms since the epoch, same machine): `before` (from the client's first byte to the
    prompt starting on ComfyUI), `run` (ComfyUI executing it), `after` (from ComfyUI done to the result received)."""
    entry = (await comfy.get(f"/history/{result['prompt_id']}")).raise_for_status().json()[result["prompt_id"]]
    said = {kind: data.get("timestamp") for kind, data in entry["status"]["messages"]}
    begun, done = said["execution_start"] / 1000 - result["epoch"], said["execution_success"] / 1000 - result["epoch"]
    result.update(before=begun, run=done - begun, after=result["wall"] - done)


async def sent_prompt(comfy_url: str, job_id: str) -> dict[str, Any]:
    """The prompt the service sent for `job_id`, from ComfyUI's history (the job's id is its prompt_id)."""
    async with httpx.AsyncClient(base_url=comfy_url, timeout=30) as http:
        entry = (await http.get(f"/history/{job_id}")).raise_for_status().json()[job_id]
    return entry["prompt"][2]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children so far."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


async def measure(
    name: str, comfy_url: str, server_url: str, workflow: str, photo: bytes, runs: int, comfy_pid: int, server_pid: int
) -> dict[str, Any]:
    async with (
        httpx.AsyncClient(base_url=comfy_url, timeout=TIMEOUT_S) as comfy_http,
        httpx.AsyncClient(base_url=server_url, timeout=TIMEOUT_S) as our_http,
    ):
        service = ViaService(server_url, workflow, photo)
        warm_service = await service.run(our_http)  # loads the models (and learns the prompt the service sends)
        direct = Direct(comfy_url, await sent_prompt(comfy_url, service.job_ids[-1]), photo)
        warm_direct = await direct.run(comfy_http)
        print(f"{name}: warm-up (models loaded) service {warm_service['wall']:.2f} s, direct {warm_direct['wall']:.2f} s", flush=True)
        results: dict[str, list[dict[str, Any]]] = {"direct": [], "service": []}
        for i in range(runs):
            order = [("direct", direct, comfy_http), ("service", service, our_http)]
            for way, runner, http in order if i % 2 == 0 else order[::-1]:
                cpu = cpu_seconds([comfy_pid]), cpu_seconds([server_pid])
                result = await runner.run(http)
                result["cpu_comfy"], result["cpu_web"] = cpu_seconds([comfy_pid]) - cpu[0], cpu_seconds([server_pid]) - cpu[1]
                await phases(comfy_http, result)
                results[way].append(result)
                print(
                    f"{name} run {i + 1} {way}: wall {result['wall'] * 1000:.0f} ms, {result['events']} messages, first at "
                    f"{result['first'] * 1000:.0f} ms, running at {result['running'] * 1000:.0f} ms; before / run / after "
                    f"{result['before'] * 1000:.0f} / {result['run'] * 1000:.0f} / {result['after'] * 1000:.0f} ms; CPU ComfyUI "
                    f"{result['cpu_comfy'] * 1000:.0f} ms, oldphoto {result['cpu_web'] * 1000:.0f} ms; load {load_avg()}",
                    flush=True,
                )
    return {"workload": name, "runs": results, "prompt": direct.prompt}


def summarize(measured: dict[str, Any]) -> list[list[Any]]:
    rows = []
    runs = measured["runs"]

    def stat(way: str, key: str, q: float = 50) -> float:
        values = [r[key] for r in runs[way]]
        return median(values) if q == 50 else percentile(values, q)

    for way in ("direct", "service"):
        extra = ratio = None
        if way == "service":
            extra = f"{(stat('service', 'wall') - stat('direct', 'wall')) * 1000:+.0f} / {(stat('service', 'wall', 90) - stat('direct', 'wall', 90)) * 1000:+.0f}"
            ratio = f"{stat('service', 'wall') / stat('direct', 'wall'):.3f}x"
        rows.append(
            [
                measured["workload"],
                way,
                len(runs[way]),
                round(stat(way, "wall") * 1000),
                round(stat(way, "wall", 90) * 1000),
                extra,
                ratio,
                f"{min(r['events'] for r in runs[way])}-{max(r['events'] for r in runs[way])}",
                round(stat(way, "first") * 1000),
                round(stat(way, "running") * 1000),
                round(stat(way, "before") * 1000),
                round(stat(way, "run") * 1000),
                round(stat(way, "after") * 1000),
                round(stat(way, "cpu_comfy") * 1000),
                round(stat(way, "cpu_web") * 1000),
            ]
        )
    return rows


def verdict(measured: dict[str, Any]) -> str:
    """The service's own time (outside ComfyUI's run, so untouched by how fast the nodes ran) against the wall
    difference, and how much ComfyUI's run itself moved from job to job."""
    runs = measured["runs"]

    def own(way: str) -> float:
        return median([r["before"] + r["after"] for r in runs[way]])

    spread = [r["run"] for way in ("direct", "service") for r in runs[way]]
    wall = median([r["wall"] for r in runs["service"]]) - median([r["wall"] for r in runs["direct"]])
    return (
        f"{measured['workload']}: outside ComfyUI's run (before + after, medians) the service adds "
        f"{(own('service') - own('direct')) * 1000:+.0f} ms per job ({own('direct') * 1000:.0f} -> {own('service') * 1000:.0f} ms); "
        f"the wall medians differ by {wall * 1000:+.0f} ms; ComfyUI's run of the same prompt took "
        f"{min(spread) * 1000:.0f}-{max(spread) * 1000:.0f} ms over both ways' jobs"
    )


HEADERS = [
    "workload",
    "way",
    "runs",
    "median ms",
    "p90 ms",
    "extra ms (median / p90)",
    "ratio of medians",
    "messages to the client",
    "first message ms (median)",
    "first 'running' message ms (median)",
    "before ComfyUI runs ms",
    "ComfyUI runs ms",
    "after ComfyUI ends ms",
    "CPU ComfyUI ms",
    "CPU oldphoto ms",
]


def comfyui_present() -> str | None:
    from tests.helpers.comfyui import SHARED, VENV_PYTHON

    missing = [str(p) for p in (SHARED / "ComfyUI" / "main.py", VENV_PYTHON) if not p.exists()]
    return f"no ComfyUI here ({', '.join(missing)}); build it with ../shared/comfyui/setup.sh .comfyui-venv" if missing else None


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="timed runs of each way per workload, alternating")
    parser.add_argument("--photo", default="detroit-circa-1915.jpg", help="a file in ../shared/photos")
    parser.add_argument("--ddcolor-width", type=int, default=320, help="the small photo's width for the DDColor workload")
    parser.add_argument("--input-size", type=int, default=256, help="DDColor's model input size")
    parser.add_argument("--upscale-width", type=int, default=1000, help="the photo's width for the upscale workload")
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test: 1 run of each, small photos")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    args = parser.parse_args(argv)
    if args.quick:  # the smoke test: the whole path once, small
        args.runs, args.ddcolor_width, args.input_size, args.upscale_width = 1, 160, 256, 480
    missing = comfyui_present()
    if missing:
        raise SystemExit(missing)

    from tests.comfy.conftest import start_comfy_server
    from tests.helpers.comfyui import UPSCALE_MODEL, running_comfyui

    info = print_header("ComfyUI overhead: one job through this service against the same prompt sent straight to ComfyUI")
    original, photo_name = photo_bytes(args.photo)
    small, small_size = resized_png(original, args.ddcolor_width)
    large, large_size = resized_png(original, args.upscale_width)
    workloads = [
        (f"DDColor {args.input_size} px, {small_size[0]}x{small_size[1]}", json.dumps(seed_example(args.input_size)), small),
        (f"upscale x2, {large_size[0]}x{large_size[1]} ({tiles(large_size)} tiles)", json.dumps(upscale_prompt(UPSCALE_MODEL)), large),
    ]
    print(f"photo: {photo_name} (as PNG); runs: {args.runs} of each way per workload", flush=True)
    base = scratch_dir("comfyui-overhead")
    measured = []
    try:
        comfy_base = base / "comfyui"
        comfy_base.mkdir()
        started = time.perf_counter()
        with running_comfyui(comfy_base) as comfy:
            server = start_comfy_server(base / "server", comfy)
            print(f"ComfyUI and `oldphoto serve` up in {time.perf_counter() - started:.1f} s", flush=True)
            try:
                for name, workflow, photo in workloads:
                    measured.append(
                        asyncio.run(measure(name, comfy.url, server.url, workflow, photo, args.runs, comfy.process.pid, server.process.pid))
                    )
            finally:
                server.stop()
        load = load_avg()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = [row for m in measured for row in summarize(m)]
    out = table(HEADERS, rows)
    said = "\n".join(verdict(m) for m in measured) + f"\nload avg at the end: {load}"
    print()
    print(out)
    print()
    print(said)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "runs": args.runs, "workloads": measured, "table": out}, indent=1))
    return out + "\n\n" + said


if __name__ == "__main__":
    main()
