"""A real ComfyUI (../shared/comfyui: ComfyUI 0.3.64 and kijai's DDColor node, unmodified) on a loopback port.

It runs from its own venv (`.comfyui-venv`, built by `.ci/run` with ../shared/comfyui/setup.sh), writes only under a
base directory of the test's, and is given random-weight models made here from the real architectures: the official
DDColor checkpoint form for the DDColor node, and a Real-ESRGAN compact model for ComfyUI's core upscale nodes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "comfyui"
VENV_PYTHON = ROOT / ".comfyui-venv" / "bin" / "python"
UPSCALE_MODEL = "oldphoto-compact-x2.pth"
SLOW_UPSCALE_MODEL = "oldphoto-compact-x2-full.pth"  # the size of Real-ESRGAN's own compact models: a job that lasts


def comfyui_python() -> Path:
    missing = [str(p) for p in (SHARED / "ComfyUI" / "main.py", VENV_PYTHON) if not p.exists()]
    if missing:
        if os.environ.get("CI") == "true" and (SHARED / "ComfyUI").exists():
            pytest.fail(f"ComfyUI's venv is missing ({', '.join(missing)}): .ci/run builds it", pytrace=False)
        pytest.skip(f"no ComfyUI here ({', '.join(missing)}); build it with ../shared/comfyui/setup.sh .comfyui-venv")
    return VENV_PYTHON


def prepare_base(base: Path) -> Path:
    """ComfyUI's writable tree: the DDColor node with a random-weight official checkpoint, and an upscale model."""
    from tests.helpers.checkpoints import write_tiny_checkpoint

    nodes = base / "custom_nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SHARED / "ComfyUI-DDColor", nodes / "ComfyUI-DDColor", dirs_exist_ok=True)
    for path in (nodes / "ComfyUI-DDColor").rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)  # the shared copy is read-only; this one is ComfyUI's
    write_tiny_checkpoint(nodes / "ComfyUI-DDColor" / "checkpoints" / "ddcolor_paper_tiny.pth")
    (nodes / "oldphoto_test_nodes.py").write_text(TEST_NODES)
    write_compact_upscaler(base / "models" / "upscale_models" / UPSCALE_MODEL)
    write_compact_upscaler(base / "models" / "upscale_models" / SLOW_UPSCALE_MODEL, features=64, convolutions=16)
    return base


def write_compact_upscaler(path: Path, features: int = 16, convolutions: int = 4) -> Path:
    """Real-ESRGAN's compact network (SRVGGNetCompact, x2), small and random: spandrel loads it by its keys."""
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(Compact(num_feat=features, num_conv=convolutions, upscale=2).state_dict(), path)
    return path


# A custom node of the tests' own, as third-party nodes report: ComfyUI's ProgressBar, each step with a preview.
TEST_NODES = """
import time

import comfy.utils
import numpy as np
from PIL import Image


class OldphotoTestSteps:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "steps": ("INT", {"default": 4, "min": 1, "max": 1000}),
            "seconds": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 10.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "oldphoto/testing"

    def run(self, image, steps, seconds):
        bar = comfy.utils.ProgressBar(steps)
        picture = Image.fromarray((image[0].cpu().numpy() * 255).clip(0, 255).astype(np.uint8))
        for step in range(1, steps + 1):
            time.sleep(seconds)
            bar.update_absolute(step, steps, ("JPEG", picture, 512))
        return (image,)


NODE_CLASS_MAPPINGS = {"OldphotoTestSteps": OldphotoTestSteps}
"""


@dataclass
class ComfyProcess:
    process: subprocess.Popen[bytes]
    port: int
    base: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.base / "comfyui.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_comfyui(base: Path, port: int | None = None, timeout: float = 90) -> ComfyProcess:
    python = comfyui_python()
    port = port or free_port()
    log = open(base / "comfyui.log", "ab")  # noqa: SIM115 - handed to the child
    command = [
        str(python), str(SHARED / "ComfyUI" / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--base-directory", str(base), "--database-url", f"sqlite:///{base / 'comfy.db'}", "--disable-auto-launch",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=base, stdout=log, stderr=subprocess.STDOUT)
    comfy = ComfyProcess(process, port, base)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode}:\n{comfy.log()[-3000:]}")
        try:
            if httpx.get(f"{comfy.url}/system_stats", timeout=1).status_code == 200:
                return comfy
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    comfy.stop(signal.SIGKILL)
    raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{comfy.log()[-3000:]}")


@contextmanager
def running_comfyui(base: Path) -> Iterator[ComfyProcess]:
    comfy = start_comfyui(prepare_base(base))
    try:
        yield comfy
    finally:
        comfy.stop()
