"""benchmarks/comfyui_overhead.py runs end to end at a tiny size (`--quick`: 1 run of each way, small photos), so it cannot rot.
Not timed: the numbers are not checked, only that it still drives a real ComfyUI directly and through a real
`oldphoto serve`, both workloads complete both ways, and it prints its table. Skipped where ComfyUI's venv is
missing (failed in CI), as the ComfyUI backend's own tests are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.comfyui import comfyui_python

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_comfyui_overhead_quick(tmp_path: Path) -> None:
    comfyui_python()  # skip (or fail in CI) before starting anything
    from benchmarks import comfyui_overhead

    out, said = comfyui_overhead.main(["--quick", "--json", str(tmp_path / "runs.json")]).split("\n\n")
    lines = out.splitlines()
    assert lines[0].startswith("| workload | way | runs | median ms | p90 ms |") and lines[1].startswith("| ---")
    assert len(lines) == 6, out
    for workload in ("DDColor 256 px", "upscale x2"):
        assert any(line.startswith(f"| {workload}") and "| direct | 1 |" in line for line in lines), workload
        assert any(line.startswith(f"| {workload}") and "| service | 1 |" in line for line in lines), workload
        assert any(line.startswith(workload) and "outside ComfyUI's run" in line for line in said.splitlines()), said
    saved = json.loads((tmp_path / "runs.json").read_text())
    for measured in saved["workloads"]:
        direct, service = measured["runs"]["direct"], measured["runs"]["service"]
        assert all(r["bytes"] > 0 for r in direct + service)
        assert all(r["kinds"].get("complete/complete") == 1 for r in service)
        assert all(r["kinds"].get("execution_success") == 1 for r in direct)
