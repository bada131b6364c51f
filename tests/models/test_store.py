from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oldphoto.errors import Cancelled, ModelInvalid, ModelMissing
from oldphoto.models.store import ModelStore, file_sha256, hub_offline
from tests.models.hub import Hub, serve_hub

TINY = "ddcolor_paper_tiny"
TINY_REPO = "piddnad/ddcolor_paper_tiny"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads allowed, whatever the environment running the tests says (the hub is on the loopback)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(online: None) -> Iterator[Hub]:
    with serve_hub() as served:
        yield served


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_nothing_is_cached_in_an_empty_models_dir(tmp_path: Path) -> None:
    assert ModelStore(tmp_path).cached_path(TINY) is None


@pytest.mark.parametrize(
    "placed",
    ["ddcolor_paper_tiny/model.safetensors", "ddcolor_paper_tiny/pytorch_model.bin", "ddcolor_paper_tiny.pth", "ddcolor_paper_tiny.pt"],
)
def test_a_checkpoint_put_in_by_hand_is_found(tmp_path: Path, placed: str) -> None:
    path = tmp_path / placed
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    assert ModelStore(tmp_path).cached_path(TINY) == path


def test_modelscopes_file_counts_for_ddcolor_modelscope_only(tmp_path: Path) -> None:
    for name in ("ddcolor_modelscope", "ddcolor_artistic"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pytorch_model.pt").write_bytes(b"weights")
    store = ModelStore(tmp_path)
    assert store.cached_path("ddcolor_modelscope") == tmp_path / "ddcolor_modelscope" / "pytorch_model.pt"
    assert store.cached_path("ddcolor_artistic") is None


def test_an_empty_file_is_not_a_cached_model(tmp_path: Path) -> None:
    (tmp_path / TINY).mkdir()
    (tmp_path / TINY / "model.safetensors").write_bytes(b"")
    assert ModelStore(tmp_path).cached_path(TINY) is None


def test_resolving_a_cached_model_never_touches_the_network(tmp_path: Path, hub: Hub) -> None:
    (tmp_path / TINY).mkdir()
    (tmp_path / TINY / "pytorch_model.bin").write_bytes(b"weights")
    assert ModelStore(tmp_path, endpoint=hub.url).resolve(TINY) == tmp_path / TINY / "pytorch_model.bin"
    assert hub.requests == []


def test_resolving_local_paths(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for name in ("a.pth", "b.pt", "c.safetensors", "d.bin"):
        (tmp_path / name).write_bytes(b"x")
        assert store.resolve(str(tmp_path / name)) == tmp_path / name
    assert store.resolve(str(tmp_path)) == tmp_path  # a Hugging Face folder; the loader looks inside
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelInvalid, match="not a checkpoint"):
        store.resolve(str(tmp_path / "model.onnx"))
    with pytest.raises(ModelMissing, match="There is no checkpoint at"):
        store.resolve(str(tmp_path / "missing.pth"))


def test_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as caught:
        ModelStore(tmp_path).resolve("ddcolor_huge")
    assert caught.value.code == "model_missing"
    assert "ddcolor_paper_tiny" in caught.value.message and "ddcolor_artistic" in caught.value.message


def test_offline_a_missing_model_says_what_to_run_and_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    started = time.monotonic()
    with pytest.raises(ModelMissing) as caught:
        ModelStore(tmp_path, endpoint=closed_port_url()).resolve(TINY)
    assert time.monotonic() - started < 1.0
    message = caught.value.message
    assert "HF_HUB_OFFLINE" in message
    assert "`oldphoto models pull ddcolor_paper_tiny`" in message
    assert str(tmp_path / TINY) in message
    assert "https://huggingface.co/piddnad/ddcolor_paper_tiny" in message
    assert "Traceback" not in message


def test_the_missing_message_for_ddcolor_modelscope_also_names_modelscope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelMissing, match=r"pytorch_model\.pt from https://www\.modelscope\.cn/models/damo/cv_ddcolor_image-colorization"):
        ModelStore(tmp_path).pull("ddcolor_modelscope")


def test_an_unreachable_hub_fails_within_seconds(tmp_path: Path, online: None) -> None:
    started = time.monotonic()
    with pytest.raises(ModelMissing, match="could not be reached") as caught:
        ModelStore(tmp_path, endpoint=closed_port_url()).pull(TINY)
    assert time.monotonic() - started < 5.0
    assert "`oldphoto models pull ddcolor_paper_tiny`" in caught.value.message


def test_pull_downloads_checks_and_records_the_weights(tmp_path: Path, hub: Hub) -> None:
    weights = os.urandom(300_000)
    hub.put(TINY_REPO, "config.json", b'{"input_size": [512, 512]}')
    hub.put(TINY_REPO, "pytorch_model.bin", weights)  # no model.safetensors in this repo: the .bin is taken
    seen: list[tuple[int, int | None]] = []
    store = ModelStore(tmp_path, endpoint=hub.url)
    path = store.pull(TINY, progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / TINY / "pytorch_model.bin"
    assert path.read_bytes() == weights
    assert (tmp_path / TINY / "config.json").is_file()
    digest = hashlib.sha256(weights).hexdigest()
    assert (tmp_path / TINY / "pytorch_model.bin.sha256").read_text() == f"{digest}  pytorch_model.bin\n"
    assert seen and seen[-1] == (len(weights), len(weights))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert store.verify(TINY)
    path.write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    assert not store.verify(TINY)


def test_pull_prefers_safetensors_when_the_repo_has_both(tmp_path: Path, hub: Hub) -> None:
    hub.put(TINY_REPO, "model.safetensors", b"s" * 1000)
    hub.put(TINY_REPO, "pytorch_model.bin", b"b" * 1000)
    assert ModelStore(tmp_path, endpoint=hub.url).pull(TINY).name == "model.safetensors"
    assert not any("pytorch_model.bin" in path for _, path in hub.requests if _ == "GET")


def test_first_use_downloads_then_the_cache_answers(tmp_path: Path, hub: Hub) -> None:
    hub.put(TINY_REPO, "model.safetensors", b"s" * 1000)
    store = ModelStore(tmp_path, endpoint=hub.url)
    first = store.resolve(TINY)
    count = len(hub.requests)
    assert store.resolve(TINY) == first
    assert len(hub.requests) == count


def test_a_download_that_does_not_match_the_hubs_hash_is_removed(tmp_path: Path, hub: Hub) -> None:
    hub.put(TINY_REPO, "model.safetensors", b"s" * 1000)
    hub.lies[(TINY_REPO, "model.safetensors")] = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ModelInvalid, match="is corrupt"):
        ModelStore(tmp_path, endpoint=hub.url).pull(TINY)
    assert not (tmp_path / TINY / "model.safetensors").exists()


def test_a_repo_without_weights_is_a_missing_model(tmp_path: Path, hub: Hub) -> None:
    hub.put(TINY_REPO, "config.json", b"{}")
    with pytest.raises(ModelMissing, match=r"holds none of model\.safetensors, pytorch_model\.bin"):
        ModelStore(tmp_path, endpoint=hub.url).pull(TINY)


def test_a_cancel_from_the_progress_callback_stops_the_download(tmp_path: Path, hub: Hub) -> None:
    hub.put(TINY_REPO, "model.safetensors", os.urandom(100_000))

    def cancel(done: int, total: int | None) -> None:
        raise Cancelled()

    with pytest.raises(Cancelled):
        ModelStore(tmp_path, endpoint=hub.url).pull(TINY, progress=cancel)
    assert ModelStore(tmp_path).cached_path(TINY) is None


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
