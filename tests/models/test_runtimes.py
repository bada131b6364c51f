from __future__ import annotations

import pytest
import torch

from oldphoto.errors import OldphotoError
from oldphoto.models.runtimes import DeviceUnavailable, resolve_device, threads_per_job, usable_cpus


def test_auto_picks_cuda_when_present_and_the_cpu_otherwise() -> None:
    assert resolve_device("auto") == (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_error(name: str) -> None:
    with pytest.raises(DeviceUnavailable, match="no usable CUDA GPU") as caught:
        resolve_device(name)
    assert isinstance(caught.value, OldphotoError) and caught.value.code == "device_unavailable"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_index_past_the_last_gpu_is_refused() -> None:
    with pytest.raises(DeviceUnavailable, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("name", ["gpu", "tpu", "cuda:x", "mps:0", ""])
def test_unknown_device_names_are_refused(name: str) -> None:
    with pytest.raises(DeviceUnavailable, match="Unknown device"):
        resolve_device(name)


def test_threads_are_shared_between_jobs_that_run_at_once() -> None:
    cpus = usable_cpus()
    assert threads_per_job(1) == cpus
    assert threads_per_job(cpus * 4) == 1
    assert threads_per_job(0) == cpus


def test_configure_threads_sets_torch_and_opencv_pools() -> None:
    import cv2

    from oldphoto.models.runtimes import configure_threads

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        configure_threads(1)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
        configure_threads(0)  # never below one
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
