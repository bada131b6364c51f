"""Each service benchmark runs end to end at a tiny size, so none can rot. Not timed: the numbers are not checked,
only that every script still runs against the real server and prints its table.

The DDColor benchmarks use their own cached checkpoint (the tiny architecture with seeded random weights, under
the temp dir's oldphoto-bench/) and model cache, so the ONNX export of the default runtime is made once per machine."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def _is_table(text: str, first_column: str) -> bool:
    lines = text.splitlines()
    return lines[0].startswith(f"| {first_column} |") and lines[1].startswith("| ---") and len(lines) >= 3


def test_fanout_quick() -> None:
    from benchmarks import fanout

    out = fanout.main(["--quick"])
    assert _is_table(out, "sockets")
    assert "| 20 |" in out


def test_ws_vs_polling_quick() -> None:
    from benchmarks import ws_vs_polling

    out = ws_vs_polling.main(["--quick"])
    assert _is_table(out, "mode")
    assert "| polling |" in out and "| websocket |" in out


def test_service_overhead_quick() -> None:
    from benchmarks import service_overhead

    out = service_overhead.main(["--quick"])
    assert _is_table(out, "path")
    assert "| service |" in out


def test_cancel_latency_quick() -> None:
    from benchmarks import cancel_latency

    out = cancel_latency.main(["--quick"])
    assert _is_table(out, "running")
    assert "| DDColor inference | 2 |" in out  # a cancel may lose the race with a 128 px job: not checked


@pytest.mark.scaleout
def test_scaleout_latency_quick() -> None:
    from benchmarks import scaleout_latency

    out = scaleout_latency.main(["--quick"])
    assert _is_table(out, "design") and "scale-out" in out and "embedded" in out


def test_queue_storm_quick() -> None:
    from benchmarks import queue_storm

    out = queue_storm.main(["--quick"])
    assert _is_table(out, "mode")
    assert re.search(r"\| embedded \| 40 \| \d+ / 5 \|", out)  # every advance of the window heard


@pytest.mark.scaleout
def test_queue_storm_scaleout_quick() -> None:
    from benchmarks import queue_storm

    out = queue_storm.main(["--quick", "--mode", "scaleout"])
    assert _is_table(out, "mode")
    assert re.search(r"\| scaleout \| 40 \| \d+ / 5 \|", out)


def test_log_bytes_quick() -> None:
    from benchmarks import log_bytes

    out = log_bytes.main(["--quick"])
    assert _is_table(out, "design") and "| this | 1 |" in out


def test_eta_quick() -> None:
    from benchmarks import eta

    out = eta.main(["--quick"])
    assert _is_table(out, "point of the job")
    assert "| 50% |" in out and "jobs 6," in out


def test_preview_cost_quick() -> None:
    from benchmarks import preview_cost

    out = preview_cost.main(["--quick"])
    worker, recorder, server = out.split("\n\n")
    assert _is_table(worker, "worker: canvas start ms (2000x1500 in)") and _is_table(recorder, "recorder (SQLite): progress note ms")
    assert _is_table(server, "design") and "| this |" in server


def test_attention_cost_quick() -> None:
    from benchmarks import attention_cost

    out = attention_cost.main(["--quick", "--runtimes", "torch"])
    assert _is_table(out, "runtime")
    assert "| torch | 64 |" in out
