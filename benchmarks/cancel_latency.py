"""Cancel latency: from sending `{"type": "cancel"}` on the WebSocket to receiving the job's `cancelled` event.

Two kinds of running job, side by side, on one real `oldphoto serve` (one worker):
  * DDColor inference: a colorize job with the real DDColor tiny architecture (seeded random weights, the real
    compute) on ../shared/photos/detroit-circa-1915.jpg at the model input size; the cancel flag is checked after
    each of the network's 22 blocks, so the latency is bounded by the longest block;
  * Pause: the test-only node (OLDPHOTO_TEST_NODES=1) that sleeps in 50 ms steps and checks the flag at each one.

Each trial submits a job, waits on the socket for the first `inference` event, waits a random delay (spread over
the inference so cancels land in different blocks), sends cancel and times the `cancelled` event on the client.
A warm-up job (model loaded in the worker) also gives the block timings from its events.

Run: .venv/bin/python benchmarks/cancel_latency.py [--trials 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    FINAL,
    MODELS_DIR,
    Server,
    load_avg,
    pause_workflow,
    percentile,
    photo_bytes,
    print_header,
    scratch_dir,
    start_server,
    submit,
    table,
    tiny_checkpoint,
)

TARGET_S = 0.5


async def trial(server: Server, index: int, image: bytes, fields: dict[str, str], delay: float) -> dict[str, Any]:
    import websockets

    token = server.token(f"cancel{index}")  # a fresh user each trial: the job limits are per user
    job_id = submit(server, token, image, source=f"127.0.0.{2 + index // 50}", **fields)["job_id"]
    events: list[tuple[float, dict[str, Any]]] = []
    inference = asyncio.Event()
    final = asyncio.Event()
    uri = f"ws://127.0.0.1:{server.port}/ws/progress?job_id={job_id}"
    async with websockets.connect(uri, subprotocols=["bearer", token], open_timeout=30) as ws:  # type: ignore[list-item]

        async def read() -> None:
            while not final.is_set():
                event = json.loads(await ws.recv())
                events.append((time.time(), event))
                if event.get("stage") == "inference":
                    inference.set()
                if event.get("type") in FINAL:
                    final.set()

        reader = asyncio.create_task(read())
        await asyncio.wait_for(inference.wait(), 600)
        await asyncio.sleep(delay)
        if final.is_set():
            reader.cancel()
            return {"outcome": events[-1][1]["type"], "latency_s": None}
        sent = time.time()
        await ws.send(json.dumps({"type": "cancel", "job_id": job_id}))
        await asyncio.wait_for(final.wait(), 600)
        await reader
    received, last = events[-1]
    before = [e for t, e in events if t < sent]
    return {"outcome": last["type"], "latency_s": received - sent if last["type"] == "cancelled" else None, "at": before[-1].get("message", "")}


def block_gaps(events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(what ended, seconds since the previous inference event) for a finished job: each DDColor block's duration."""
    marks = [(e.get("message", ""), e["ts"]) for e in events if e.get("stage") == "inference"]
    marks += [("until postprocess", e["ts"]) for e in events if e.get("stage") == "postprocess"][:1]
    return [(name, b - a) for (_, a), (name, b) in zip(marks, marks[1:], strict=False)]


async def follow_all(server: Server, token: str, job_id: str) -> list[dict[str, Any]]:
    import websockets

    uri = f"ws://127.0.0.1:{server.port}/ws/progress?job_id={job_id}"
    out = []
    async with websockets.connect(uri, subprotocols=["bearer", token], open_timeout=30) as ws:  # type: ignore[list-item]
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 600))
            out.append(event)
            if event["type"] in FINAL:
                return out


def run_kind(server: Server, kind: str, trials: int, image: bytes, fields: dict[str, str], max_delay: float, first: int) -> dict[str, Any]:
    rng = random.Random(7)
    results = []
    for i in range(trials):
        result = asyncio.run(trial(server, first + i, image, fields, rng.uniform(0.0, max_delay)))
        results.append(result)
        print(f"{kind} trial {i + 1}: {result}", flush=True)
    latencies = [r["latency_s"] for r in results if r["latency_s"] is not None]
    return {
        "kind": kind,
        "trials": trials,
        "cancelled": len(latencies),
        "finished_first": sum(1 for r in results if r["outcome"] == "complete"),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="cancels of each kind")
    parser.add_argument("--input-size", type=int, default=512, help="the model's input size (OLDPHOTO_INPUT_SIZE), 512 as shipped")
    parser.add_argument("--photo", default="detroit-circa-1915.jpg", help="a file in ../shared/photos")
    parser.add_argument("--checkpoint", type=Path, help="a DDColor checkpoint (default: the tiny architecture, random weights)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"], help="DDColor runtime (OLDPHOTO_RUNTIME), auto as shipped")
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test: 2 cancels of each kind at input size 128")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.input_size, args.runtime = 2, 128, "torch"  # no ONNX export in a smoke test
    print_header("Cancel latency: WebSocket cancel to `cancelled` event")
    checkpoint = args.checkpoint or tiny_checkpoint()
    photo, photo_name = photo_bytes(args.photo)
    print(f"photo: {photo_name}; model input size: {args.input_size}; runtime: {args.runtime}; checkpoint: {checkpoint}", flush=True)
    env = {
        "OLDPHOTO_MODEL": str(checkpoint),
        "OLDPHOTO_DEVICE": "cpu",
        "OLDPHOTO_WORKERS": "1",
        "OLDPHOTO_TEST_NODES": "1",
        "OLDPHOTO_INPUT_SIZE": str(args.input_size),
        "OLDPHOTO_RUNTIME": args.runtime,
        "OLDPHOTO_MODELS_DIR": str(MODELS_DIR),
    }
    with start_server(scratch_dir("cancel"), env) as server:
        token = server.token("warm")
        warm_job = submit(server, token, photo, steps="colorize", source="127.0.0.2")["job_id"]
        asyncio.run(follow_all(server, token, warm_job))  # loads the model in the worker
        token = server.token("warm2")
        timed_job = submit(server, token, photo, steps="colorize", source="127.0.0.2")["job_id"]
        events = asyncio.run(follow_all(server, token, timed_job))
        blocks = block_gaps(events)
        gaps = [g for _, g in blocks]
        inference_s = sum(gaps)
        longest = max(blocks, key=lambda b: b[1])
        print(f"warm job: inference {inference_s:.2f} s; longest interval between inference events {longest[1]:.3f} s, ending {longest[0]!r}", flush=True)
        print("intervals: " + ", ".join(f"{g * 1000:.0f}" for g in gaps) + " ms", flush=True)
        rows = [
            run_kind(server, "DDColor inference", args.trials, photo, {"steps": "colorize"}, 0.9 * inference_s, 0),
            run_kind(server, "Pause node (50 ms steps)", args.trials, photo, {"workflow": pause_workflow(30)}, 2.0, 1000),
        ]
        load = load_avg()
    out = table(
        ["running", "trials", "cancelled", "finished first", "p50 ms", "p99 ms", "max ms", "longest step ms"],
        [
            [r["kind"], r["trials"], r["cancelled"], r["finished_first"], r["p50_ms"], r["p99_ms"], r["max_ms"], max(gaps) * 1000 if i == 0 else 50.0]
            for i, r in enumerate(rows)
        ],
    )
    met = all(r["p99_ms"] < TARGET_S * 1000 for r in rows)
    measured = ", ".join(f"{r['kind']}: p99 {r['p99_ms']:.0f} ms" for r in rows)
    verdict = f"target: cancelled within {TARGET_S} s at p99: {'met' if met else 'NOT met'} ({measured}); load avg {load}"
    print()
    print(out)
    print()
    print(verdict)
    return out + "\n\n" + verdict


if __name__ == "__main__":
    main()
