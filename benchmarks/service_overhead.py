"""What the service adds: one colorize job through REST + WebSocket against the engine called directly.

  * direct:  in this process, `decode_file` + `run_workflow(parse_workflow('{"steps": "colorize"}'), RunOptions(model=
             <checkpoint>), Reporter(sink=...))` + `save_png` -- the work a worker does, with nothing around it;
  * service: `POST /api/jobs` (multipart upload of the same photo) to a real `oldphoto serve`, then
             `/ws/progress?job_id=...` until `complete` (the result is on disk by then), timed by the client.

Same model (the real DDColor tiny architecture with seeded random weights: same compute as the real checkpoint),
same photo (../shared/photos/detroit-circa-1915.jpg, or a generated one when it is absent), same device (CPU),
same runtime (OLDPHOTO_RUNTIME, `auto` as shipped: ONNX Runtime on the CPU when installed; both use one model cache,
so an ONNX export happens once), same torch threads (both keep the default). Both are warmed first (the model loaded in the worker,
and in this process), then the runs alternate, direct and service, and the medians are compared.

Run: .venv/bin/python benchmarks/service_overhead.py [--runs 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmarks._common import (  # noqa: E402
    FINAL,
    MODELS_DIR,
    Server,
    load_avg,
    photo_bytes,
    print_header,
    scratch_dir,
    start_server,
    table,
    tiny_checkpoint,
)

TARGET_PERCENT = 5.0
WORKFLOW = json.dumps({"steps": "colorize"})


def stage_seconds(marks: list[tuple[float, str]], stage: str, following: str) -> float:
    """Seconds from the first mark of `stage` to the first mark of `following` (same clock)."""
    begin = next(t for t, s in marks if s == stage)
    end = next(t for t, s in marks if s == following)
    return end - begin


class Direct:
    def __init__(self, checkpoint: Path, photo: bytes, models_dir: Path, input_size: int, runtime: str) -> None:
        from oldphoto.engine import Reporter, RunOptions, parse_workflow, run_workflow
        from oldphoto.imaging import decode_file, save_png

        self.folder = Path(tempfile.mkdtemp(prefix="oldphoto-bench-direct-"))
        self.input = self.folder / "input"
        self.input.write_bytes(photo)
        self.output = self.folder / "result.png"
        self.options = RunOptions(model=str(checkpoint), models_dir=models_dir, device="cpu", input_size=input_size, runtime=runtime)
        self._decode, self._parse, self._run, self._save, self._reporter = decode_file, parse_workflow, run_workflow, save_png, Reporter
        self.me = psutil.Process()

    def run(self) -> dict[str, float]:
        marks: list[tuple[float, str]] = []
        cpu = self.me.cpu_times()
        started = time.perf_counter()
        image = self._decode(self.input, max_pixels=40_000_000)
        reporter = self._reporter(sink=lambda note: marks.append((time.time(), note.stage)))
        restored = self._run(self._parse(WORKFLOW), image.rgb, options=self.options, reporter=reporter)
        self._save(self.output, restored, image.alpha)
        wall = time.perf_counter() - started
        after = self.me.cpu_times()
        return {
            "wall": wall,
            "inference": stage_seconds(marks, "inference", "postprocess"),
            "cpu": (after.user + after.system) - (cpu.user + cpu.system),
            "events": len(marks),
        }


class ViaService:
    def __init__(self, server: Server, photo: bytes, name: str) -> None:
        self.server = server
        self.photo = photo
        self.name = name
        self.count = 0

    def cpu(self) -> float:
        """Web process and its workers (not this client)."""
        processes = [self.server.ps, *self.server.ps.children(recursive=True)]
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def run(self) -> dict[str, float]:
        self.count += 1
        token = self.server.token(f"overhead{self.count}")  # a fresh user each run: the 30-jobs-a-minute limit is per user
        cpu = self.cpu()
        result = asyncio.run(self._run(token))
        result["cpu"] = self.cpu() - cpu
        return result

    async def _run(self, token: str) -> dict[str, float]:
        import websockets

        async with httpx.AsyncClient(base_url=self.server.url, timeout=120) as http:
            started = time.perf_counter()
            response = await http.post(
                "/api/jobs",
                headers={"Authorization": f"Bearer {token}"},
                files={"file": (self.name, self.photo)},
                data={"steps": "colorize"},
            )
            if response.status_code != 202:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
            job_id = response.json()["job_id"]
            uri = f"ws://127.0.0.1:{self.server.port}/ws/progress?job_id={job_id}"
            marks: list[tuple[float, str]] = []
            async with websockets.connect(uri, subprotocols=["bearer", token], open_timeout=30) as ws:  # type: ignore[list-item]
                while True:
                    event = json.loads(await asyncio.wait_for(ws.recv(), 300))
                    marks.append((event["ts"], event["stage"]))
                    if event["type"] in FINAL:
                        wall = time.perf_counter() - started
                        if event["type"] != "complete":
                            raise RuntimeError(f"job ended with {event}")
                        return {"wall": wall, "inference": stage_seconds(marks, "inference", "postprocess"), "events": len(marks)}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each, alternating")
    parser.add_argument("--photo", default="detroit-circa-1915.jpg", help="a file in ../shared/photos")
    parser.add_argument("--checkpoint", type=Path, help="a DDColor checkpoint (default: the tiny architecture, random weights)")
    parser.add_argument("--input-size", type=int, default=512, help="the model's input size (OLDPHOTO_INPUT_SIZE), 512 as shipped")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"], help="DDColor runtime (OLDPHOTO_RUNTIME), auto as shipped")
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test: one run of each at input size 128, PyTorch")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.input_size, args.runtime = 1, 128, "torch"  # no ONNX export (10-20 s a side) in a smoke test
    print_header("Service overhead: one colorize job through REST + WebSocket against the engine called directly")
    checkpoint = args.checkpoint or tiny_checkpoint()
    photo, photo_name = photo_bytes(args.photo)
    print(f"photo: {photo_name}; model input size: {args.input_size}; runtime: {args.runtime}; checkpoint: {checkpoint}", flush=True)
    data_dir = scratch_dir("overhead")
    env = {
        "OLDPHOTO_MODEL": str(checkpoint),
        "OLDPHOTO_DEVICE": "cpu",
        "OLDPHOTO_WORKERS": "1",
        "OLDPHOTO_INPUT_SIZE": str(args.input_size),
        "OLDPHOTO_RUNTIME": args.runtime,
        "OLDPHOTO_MODELS_DIR": str(MODELS_DIR),
    }
    with start_server(data_dir, env) as server:
        direct = Direct(checkpoint, photo, MODELS_DIR, args.input_size, args.runtime)
        service = ViaService(server, photo, photo_name if photo_name.endswith(".jpg") else "photo.png")
        warm = {"direct": direct.run()["wall"], "service": service.run()["wall"]}  # loads the model on each side
        print(f"warm-up (model load included): direct {warm['direct']:.2f} s, service {warm['service']:.2f} s", flush=True)
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "service": []}
        for i in range(args.runs):
            order = (("direct", direct), ("service", service)) if i % 2 == 0 else (("service", service), ("direct", direct))
            for name, runner in order:
                result = runner.run()
                runs[name].append(result)
                print(f"run {i + 1} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()) + f"; load {load_avg()}", flush=True)
        load = load_avg()
    shutil.rmtree(direct.folder, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    rows = []
    for name in ("direct", "service"):
        walls = [r["wall"] for r in runs[name]]
        extra = None
        if name == "service":
            extra = f"{med('service', 'wall') - med('direct', 'wall'):+.3f} s ({(med('service', 'wall') / med('direct', 'wall') - 1) * 100:+.1f}%)"
        rows.append(
            [
                name,
                args.runs,
                med(name, "wall"),
                min(walls),
                max(walls),
                med(name, "wall") - med(name, "inference"),
                med(name, "inference"),
                med(name, "cpu"),
                int(med(name, "events")),
                extra,
            ]
        )
    out = table(
        ["path", "runs", "median wall s", "min s", "max s", "median outside inference s", "median inference s", "median CPU s", "events", "extra wall over direct"],
        rows,
    )
    extra_pct = (med("service", "wall") / med("direct", "wall") - 1) * 100
    outside = med("service", "wall") - med("service", "inference") - (med("direct", "wall") - med("direct", "inference"))
    verdict = (
        f"extra wall time of the service: {extra_pct:+.1f}% of the direct median (target < {TARGET_PERCENT:.0f}%): "
        f"{'met' if extra_pct < TARGET_PERCENT else 'NOT met'}; of which outside inference {outside:+.3f} s "
        f"({outside / med('direct', 'wall') * 100:+.1f}%); load avg {load}"
    )
    print()
    print(out)
    print()
    print(verdict)
    return out + "\n\n" + verdict


if __name__ == "__main__":
    main()
