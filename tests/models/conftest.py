from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from oldphoto.models.ddcolor import Colorizer, build_network, read_state_dict
from tests.helpers import checkpoints

CPU = torch.device("cpu")
# Small model inputs keep a forward pass near 0.1 s on two cores; the pipeline is the same at any multiple of 32.
FAST_INPUT = 64


@pytest.fixture(scope="session")
def checkpoint_form(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The tiny checkpoint in one of the official forms, written on first use (each is ~220 MB)."""
    root = tmp_path_factory.mktemp("forms")
    writers: dict[str, Callable[[Path], Path]] = {
        "pth_params": lambda _: tiny_checkpoint,
        "pth_raw": lambda d: checkpoints.write_raw(tiny_checkpoint, d / "ddcolor_raw.pth"),
        "pt_modelscope": lambda d: checkpoints.write_modelscope_pt(tiny_checkpoint, d / "pytorch_model.pt"),
        "safetensors": lambda d: checkpoints.write_safetensors(tiny_checkpoint, d / "ddcolor.safetensors"),
        "bin": lambda d: checkpoints.write_raw(tiny_checkpoint, d / "pytorch_model.bin"),
        "hf_folder": lambda d: checkpoints.write_hf_folder(tiny_checkpoint, d / "hf_snapshot"),
        "hf_folder_bin": lambda d: checkpoints.write_hf_folder(tiny_checkpoint, d / "hf_snapshot_bin", "pytorch_model.bin"),
    }
    made: dict[str, Path] = {}

    def make(form: str) -> Path:
        if form not in made:
            folder = root / form
            folder.mkdir()
            made[form] = writers[form](folder)
        return made[form]

    return make


@pytest.fixture(scope="session")
def tiny_network(tiny_checkpoint: Path) -> torch.nn.Module:
    """The tiny checkpoint's network, built by the project's loader and called directly (no pipeline)."""
    return build_network(read_state_dict(tiny_checkpoint))


@pytest.fixture(scope="session")
def colorizer(tiny_network: torch.nn.Module) -> Colorizer:
    return Colorizer(tiny_network, CPU)


@pytest.fixture(scope="session")
def synthetic_image() -> np.ndarray:
    """An RGB uint8 image, not square and not a multiple of anything, with smooth ramps, hard edges and colour."""
    height, width = 203, 317
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 9.0) * np.cos(y / 13.0)], axis=-1) * 255
    image[60:140, 90:200] = (250, 30, 40)  # a saturated block with hard edges
    image[150:190, 20:300] = (12, 12, 12)  # a near-black band
    return np.ascontiguousarray(image.round().astype(np.uint8))


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
