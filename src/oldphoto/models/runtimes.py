"""Where models run: the torch device a setting names, and how many CPU threads one job may use."""

from __future__ import annotations

import os
import re

import torch

from oldphoto.errors import OldphotoError

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


class DeviceUnavailable(OldphotoError):
    code = "device_unavailable"
    http_status = 503


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`; a missing device is an error."""
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
    """Set torch's and OpenCV's thread pools for this process (call once, at worker start)."""
    import cv2

    torch.set_num_threads(max(1, threads))
    cv2.setNumThreads(max(1, threads))
