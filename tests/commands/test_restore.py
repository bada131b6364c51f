"""`oldphoto restore` as a user runs it: a real process, real files, the real loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.workflows import SEED_EXAMPLE


def oldphoto(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OLDPHOTO_MODELS_DIR": "/nonexistent-models", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "oldphoto", *args], capture_output=True, text=True, env=full_env, timeout=300)


def grey_photo(path: Path, size: tuple[int, int] = (160, 100)) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8), "L").save(path)
    return path


def test_the_seed_example_workflow_runs_as_it_stands_with_json_events(tmp_path: Path, tiny_checkpoint: Path, photo: Path) -> None:
    workflow = tmp_path / "example.json"
    workflow.write_text(json.dumps(SEED_EXAMPLE))
    out = tmp_path / "out.png"
    done = oldphoto("restore", str(photo), "-o", str(out), "--workflow", str(workflow), "--model", str(tiny_checkpoint), "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    stages = list(dict.fromkeys(e["stage"] for e in events))
    assert stages == ["upload", "preprocess", "load_model", "inference", "postprocess", "complete"]
    assert [e["progress"] for e in events] == sorted(e["progress"] for e in events) and events[-1]["progress"] == 100
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert Image.open(out).size == Image.open(photo).size


def test_a_folder_of_photos_goes_to_a_folder_with_steps(tmp_path: Path, tiny_checkpoint: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.jpg"):
        grey_photo(inputs / name)
    (inputs / "notes.txt").write_text("not a photo")
    done = oldphoto("restore", str(inputs), "-o", str(tmp_path / "out"), "--steps", "denoise,colorize,sharpen", "--model", str(tiny_checkpoint), "--input-size", "256")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_exit_codes_say_what_went_wrong(tmp_path: Path, tiny_checkpoint: Path) -> None:
    photo = grey_photo(tmp_path / "p.png")
    missing_model = oldphoto("restore", str(photo), "-o", str(tmp_path / "o.png"), "--model", "ddcolor_paper_tiny")
    assert missing_model.returncode == 1 and "oldphoto models pull ddcolor_paper_tiny" in missing_model.stderr
    assert "Traceback" not in missing_model.stderr
    not_an_image = tmp_path / "x.png"
    not_an_image.write_text("hello")
    bad_input = oldphoto("restore", str(not_an_image), "-o", str(tmp_path / "o.png"), "--model", str(tiny_checkpoint))
    assert bad_input.returncode == 2 and "Traceback" not in bad_input.stderr
    bad_steps = oldphoto("restore", str(photo), "-o", str(tmp_path / "o.png"), "--steps", "colorize,teleport")
    assert bad_steps.returncode == 2 and "teleport" in bad_steps.stderr
    assert oldphoto("restore").returncode == 2


def test_precision_fast_says_which_format_ran_in_the_events_and_on_the_terminal(tmp_path: Path, tiny_checkpoint: Path) -> None:
    photo = grey_photo(tmp_path / "p.png")
    common = ("--model", str(tiny_checkpoint), "--input-size", "64", "--precision", "fast")
    done = oldphoto("restore", str(photo), "-o", str(tmp_path / "o.png"), *common, "--json")
    assert done.returncode == 0, done.stderr
    said = [json.loads(line)["precision"] for line in done.stdout.splitlines() if "precision" in json.loads(line)]
    assert len(said) == 1 and said[0]["requested"] == "fast"
    assert said[0]["dtype"] in ("float32", "bfloat16") and said[0]["reason"]
    bar = oldphoto("restore", str(photo), "-o", str(tmp_path / "o2.png"), *common, env={"COLUMNS": "200"})
    assert bar.returncode == 0, bar.stderr
    assert f"Precision: {'fast' if said[0]['reason'] == 'fast' else said[0]['dtype']}" in bar.stderr
    env_faithful = oldphoto("restore", str(photo), "-o", str(tmp_path / "o3.png"), "--model", str(tiny_checkpoint), "--input-size", "64",
                            "--json", env={"OLDPHOTO_PRECISION": "faithful"})
    faithful = [json.loads(line)["precision"] for line in env_faithful.stdout.splitlines() if "precision" in json.loads(line)]
    assert faithful == [{"requested": "faithful", "dtype": "float32", "reason": "faithful"}]
    assert oldphoto("restore", str(photo), "-o", str(tmp_path / "o4.png"), "--precision", "turbo").returncode == 2


def test_token_prints_a_token_the_server_accepts(tmp_path: Path) -> None:
    import jwt

    secret = "a-secret-long-enough-for-hs256-tokens-0123456789"
    done = oldphoto("token", "--user", "alice", "--ttl", "60", env={"OLDPHOTO_JWT_SECRET": secret})
    claims = jwt.decode(done.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 60


def test_models_list_names_every_known_model_offline(tmp_path: Path) -> None:
    done = oldphoto("models", "list", env={"COLUMNS": "200", "OLDPHOTO_MODELS_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    for name in ("ddcolor_paper_tiny", "ddcolor_modelscope", "ddcolor_artistic", "ddcolor_paper", "realesr-animevideov3-x2"):
        assert name in done.stdout
    pulled = oldphoto("models", "pull", "ddcolor_paper_tiny", env={"OLDPHOTO_MODELS_DIR": str(tmp_path)})
    assert pulled.returncode == 1 and "Traceback" not in pulled.stderr


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["restore", "--help"]])
def test_help_works(argv: list[str]) -> None:
    assert oldphoto(*argv).returncode == 0


def test_attention_writes_the_colour_query_maps_beside_the_photo_only_when_asked(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import zipfile

    source = grey_photo(tmp_path / "a.png")
    base = ["restore", str(source), "--model", str(tiny_checkpoint), "--input-size", "64"]
    plain = oldphoto(*base, "-o", str(tmp_path / "plain.png"))
    assert plain.returncode == 0, plain.stderr
    assert not (tmp_path / "plain.attention.zip").exists()
    done = oldphoto(*base, "-o", str(tmp_path / "seen.png"), "--attention")
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "seen.attention.zip") as maps:
        index = json.loads(maps.read("index.json"))
        assert (index["width"], index["height"]) == (160, 100) and len(index["queries"]) == 6
        assert maps.read("dominance.png").startswith(b"\x89PNG")
