"""Where models run: the device a setting names, and how many CPU threads one job may use.

PyTorch is imported only when it must be: a process that runs cached ONNX graphs on the CPU never needs it.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from typing import TYPE_CHECKING

from oldphoto.errors import OldphotoError

if TYPE_CHECKING:
    import torch

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


class DeviceUnavailable(OldphotoError):
    code = "device_unavailable"
    http_status = 503


# What a GPU driver leaves on a Linux machine (NVIDIA's, WSL's, ROCm's, which PyTorch also calls CUDA): without any
# of them PyTorch finds no GPU either, so `auto` is the CPU without importing it.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidia[0-9]*", "/dev/dxg", "/dev/kfd")
_threads: int | None = None


def gpu_driver_present() -> bool:
    return any(glob.glob(pattern) for pattern in GPU_DRIVER_PATHS)


def device_name(name: str) -> str:
    """The device a setting names, as `cpu`, `cuda` or `cuda:N` (checked as `resolve_device` does); PyTorch is
    asked only when a GPU may be there."""
    wanted = name.strip().lower()
    if wanted == "cpu" or (wanted == "auto" and not gpu_driver_present()):
        return "cpu"
    return str(resolve_device(name))


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`; a missing device is an error."""
    import torch

    wanted = name.strip().lower()
    if wanted == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if wanted == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(wanted)
    if match is None:
        raise DeviceUnavailable(f"Unknown device {name!r}: use auto, cpu, cuda or cuda:N.")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"The device {name!r} was asked for, but this machine has no usable CUDA GPU; use auto or cpu.")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceUnavailable(f"The device {name!r} does not exist: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}.")
    return torch.device("cuda", index)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_per_job(jobs_at_once: int) -> int:
    """Share the CPUs between the jobs that run at once, so they do not fight over the same cores."""
    return max(1, usable_cpus() // max(1, jobs_at_once))


def configure_threads(threads: int) -> None:
    """Set this process's thread pools: OpenCV's and ONNX Runtime's sessions now, PyTorch's now or when it is first
    imported by a model load (call once, at worker start)."""
    import cv2

    global _threads
    _threads = max(1, threads)
    cv2.setNumThreads(_threads)
    if "torch" in sys.modules:
        apply_torch_threads()


def configured_threads() -> int:
    """The threads one model run may use: as configured, else every CPU this process may run on."""
    return _threads or usable_cpus()


def apply_torch_threads() -> None:
    """Give PyTorch the configured thread count (it keeps its own default when none was configured)."""
    import torch

    if _threads is not None and torch.get_num_threads() != _threads:
        torch.set_num_threads(_threads)
