"""benchmarks/cold_start.py runs end to end at a tiny size, so it cannot rot; and its yardstick, the authors' script
(benchmarks/authors_inference.py), computes what tests/models/reference.py computes. Not timed: the numbers are not
checked, only that every part still runs against the real CLI, WorkerPool and `oldphoto serve`, and prints its tables.

The first run on a machine exports the tiny checkpoint's ONNX segments at 64 px (cached under the temp dir's
oldphoto-bench/, shared with the other benchmarks' smoke tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_cold_start_quick(tmp_path: Path) -> None:
    from benchmarks import cold_start

    out = cold_start.main(["--quick", "--out", str(tmp_path / "cold_start.json")])
    assert out.startswith("| measure | oldphoto | authors | oldphoto / authors | target | met |")
    for row in (
        "| restore one photo: wall s |",
        "| restore one photo: peak RSS MB |",
        "| restore four photos, one process: wall s |",
        "| worker: spawn -> Ready s |",
        "| worker: a first job sent 1 s after spawn, s |",
        "| web: `oldphoto serve` -> /healthz answers s |",
        "| web: RSS MB 1 s after /healthz (web process only) |",
        "| process start -> ",
        "| all imports |",
    ):
        assert row in out, row
    assert (tmp_path / "cold_start.json").is_file()


def test_the_authors_script_computes_the_reference_pipeline(tmp_path: Path) -> None:
    import cv2
    import torch

    from benchmarks import authors_inference
    from benchmarks._common import tiny_checkpoint
    from tests.helpers.checkpoints import read_params
    from tests.models.reference import authors_pipeline

    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    cv2.imwrite(str(folder / "photo.png"), bgr)
    checkpoint = tiny_checkpoint()
    authors_inference.main(["--model_path", str(checkpoint), "--input", str(folder), "--output", str(out),
                            "--input_size", "64", "--model_size", "tiny"])
    written = cv2.imread(str(out / "photo.png"))

    pipeline = authors_inference.ImageColorizationPipeline(str(checkpoint), input_size=64, model_size="tiny")
    loaded, saved = pipeline.model.state_dict(), read_params(checkpoint)  # strict=False, as the authors load: check
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    with torch.inference_mode():
        expected = authors_pipeline(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pipeline.model, 64)
    assert np.array_equal(written, cv2.cvtColor(expected, cv2.COLOR_RGB2BGR))
    assert float(np.abs(written[..., 1].astype(int) - written[..., 2].astype(int)).mean()) > 1  # colour, not grey
