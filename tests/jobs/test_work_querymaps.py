"""A colorize job's colour-query maps as the worker keeps them: packed beside the result when the setting is on, and
when it is off nothing of the lens runs and no file is written."""

from __future__ import annotations

from pathlib import Path

from oldphoto.engine import CancelToken, RunOptions
from oldphoto.jobs import querymaps
from oldphoto.jobs.messages import Done, FromWorker
from oldphoto.jobs.work import WorkItem, execute
from tests.helpers.images import png_bytes


def run_job(tmp_path: Path, checkpoint: Path, steps: str, attention: bool) -> tuple[Path, list[FromWorker]]:
    photo = tmp_path / "in.png"
    photo.write_bytes(png_bytes(80, 60, seed=3))
    result = tmp_path / f"job-{steps}-{attention}.png"
    options = RunOptions(
        model=str(checkpoint), models_dir=tmp_path / "models", device="cpu", input_size=64, runtime="torch", attention=attention
    )
    sent: list[FromWorker] = []
    item = WorkItem(result.stem, str(photo), str(result), f'{{"steps": "{steps}"}}', options, 1_000_000)
    execute(item, CancelToken(), sent.append)
    return result, sent


def test_a_colorize_job_keeps_its_maps_beside_the_result(tmp_path: Path, tiny_checkpoint: Path, lens_calls: list[int]) -> None:
    result, sent = run_job(tmp_path, tiny_checkpoint, "colorize", attention=True)
    assert isinstance(sent[-1], Done), sent[-1]
    maps = querymaps.path_for(result)
    index = querymaps.read_index(maps)
    assert index is not None and lens_calls == [1]
    assert (index["width"], index["height"]) == (80, 60)  # the photo's shape (never enlarged past it)
    assert index["grid"] == [16, 16]  # the model input's quarter
    assert len(index["queries"]) == 6 and all(querymaps.read_image(maps, q["map"]) for q in index["queries"])
    assert querymaps.read_image(maps, index["dominance"]) is not None
    shares = [q["share"] for q in index["queries"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001


def test_with_the_setting_off_the_lens_never_runs_and_nothing_is_kept(tmp_path: Path, tiny_checkpoint: Path, lens_calls: list[int]) -> None:
    result, sent = run_job(tmp_path, tiny_checkpoint, "colorize", attention=False)
    assert isinstance(sent[-1], Done) and result.is_file()
    assert lens_calls == []
    assert not querymaps.path_for(result).exists()
    assert list(tmp_path.glob(f"*{querymaps.SUFFIX}")) == []


def test_the_retention_purge_removes_the_maps_with_the_result_and_strays_without_a_job(tmp_path: Path) -> None:
    import time

    from oldphoto.engine import RunOptions as Options
    from oldphoto.imaging.querymaps import QueryMaps
    from oldphoto.jobs.lifecycle import JobStatus
    from oldphoto.jobs.service import ServiceConfig
    from oldphoto.jobs.store import JobStore, NewJob
    from oldphoto.protocol import JobEvent
    from oldphoto.wiring import embedded_service

    config = ServiceConfig(data_dir=tmp_path, run_options=Options(), retention_s=0.01)
    config.results_dir.mkdir(parents=True)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    service = embedded_service(config, store)
    job = store.create(NewJob(owner="u", workflow="{}", input_path=str(tmp_path / "input")), JobEvent(job_id="x", seq=1, stage="upload", message_key="upload", progress=0))
    result = config.results_dir / f"{job.id}.png"
    result.write_bytes(b"\x89PNG")
    maps = querymaps.path_for(result)
    querymaps.save(maps, QueryMaps({"dominance": "dominance", "queries": []}, {"dominance": b"\x89PNG"}))
    stray = querymaps.path_for(config.results_dir / "gone-job.png")  # left by a crash: no job has it
    stray.write_bytes(maps.read_bytes())
    store.set_status(job.id, JobStatus.RUNNING)
    store.append(job.id, {"type": "complete", "stage": "complete", "message_key": "complete", "progress": 100}, JobStatus.SUCCEEDED, result_path=str(result))
    time.sleep(0.05)
    assert service._purge() == 1
    assert list(config.results_dir.iterdir()) == []
    store.close()
