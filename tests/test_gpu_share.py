"""The per-GPU worker count from a measured peak and the free memory."""

from __future__ import annotations

import pytest
import torch

from senet.errors import SenetError
from senet.worker.gpu_share import free_bytes, measure_peak_bytes, per_gpu_default

GiB = 2**30


def test_workers_fill_the_free_memory_with_a_margin():
    # 0.9 * 80 GiB / (3 GiB + 1 GiB overhead) = 18 -> capped at 8
    assert per_gpu_default(3 * GiB, 80 * GiB, overhead_bytes=GiB) == 8
    # 0.9 * 20 / (3 + 1) = 4.5 -> 4
    assert per_gpu_default(3 * GiB, 20 * GiB, overhead_bytes=GiB) == 4
    # 0.9 * 20 / (5 + 1) = 3.0 -> 3 exactly
    assert per_gpu_default(5 * GiB, 20 * GiB, overhead_bytes=GiB) == 3
    assert per_gpu_default(3 * GiB, 80 * GiB, overhead_bytes=GiB, cap=32) == 18


def test_at_least_one_worker_even_when_nothing_fits():
    assert per_gpu_default(40 * GiB, 10 * GiB) == 1
    assert per_gpu_default(1, 0) == 1


def test_a_missing_measurement_is_an_error():
    with pytest.raises(SenetError, match="measure the model's peak first"):
        per_gpu_default(0, 10 * GiB)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_per_gpu_on_a_cpu_machine_is_a_one_line_error():
    with pytest.raises(SenetError, match="--per-gpu needs CUDA GPUs"):
        free_bytes(torch.device("cpu"))
    with pytest.raises(SenetError, match="--per-gpu needs CUDA GPUs"):
        measure_peak_bytes("resnet20", 8, 32, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measuring a peak needs a CUDA GPU")
def test_measured_peak_grows_with_the_batch():
    small = measure_peak_bytes("se_resnet20", 32, 32, torch.device("cuda"))
    large = measure_peak_bytes("se_resnet20", 128, 32, torch.device("cuda"))
    assert 0 < small < large
