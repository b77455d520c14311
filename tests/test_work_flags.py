"""`senet work --pack` and `--per-gpu`: argument checks and the device list (CPU)."""

from __future__ import annotations

import pytest
import torch

from senet.cli import main
from senet.errors import SenetError
from senet.worker.devices import cuda_devices, expand_per_gpu, parse_per_gpu


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_pack_below_one_or_not_a_number_is_one_line(tmp_path, capsys, value):
    storage = ["--storage", str(tmp_path / "q.journal")]
    assert main(["work", *storage, f"--pack={value}"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"senet work: error: --pack {value!r}: expected an integer >= 1")
    assert not (tmp_path / "q.journal").exists()  # refused before the queue was opened


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_per_gpu_on_a_machine_without_cuda_is_one_line(tmp_path, capsys):
    storage = ["--storage", str(tmp_path / "q.journal")]
    assert main(["work", *storage, "--per-gpu", "2"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("senet work: error: --per-gpu 2: this machine has no CUDA GPU")


def test_per_gpu_values():
    assert parse_per_gpu("3", gpus=1) == 3
    assert parse_per_gpu("auto", gpus=2) is None
    assert parse_per_gpu(None, gpus=0) is None  # not given on CPU: no measurement, no error
    for bad in ("0", "x", "-1"):
        with pytest.raises(SenetError, match="--per-gpu"):
            parse_per_gpu(bad, gpus=1)
    with pytest.raises(SenetError, match="no CUDA GPU"):
        parse_per_gpu("auto", gpus=0)


def test_each_listed_gpu_gets_k_workers():
    assert expand_per_gpu(["cuda:0", "cuda:1"], 3) == ["cuda:0"] * 3 + ["cuda:1"] * 3
    assert expand_per_gpu(["cuda:0", "cpu"], 2) == ["cuda:0", "cuda:0", "cpu"]
    assert expand_per_gpu(["cuda:1"], 1) == ["cuda:1"]
    assert cuda_devices(["auto"], 2) == ["cuda:0", "cuda:1"]
    assert cuda_devices(["cuda", "cpu"], 2) == ["cuda:0", "cpu"]


def test_a_worker_device_always_reaches_cuda_as_an_index():
    # `senet work` measured memory with torch.cuda.*(device) on "cuda" in a fresh child
    # and died with "Invalid device argument"; the measurement now gets a GPU index.
    from senet.worker.devices import cuda_index

    assert [cuda_index(d) for d in ("cuda", "auto", "cuda:0", "cuda:3")] == [0, 0, 0, 3]
    for bad in ("cpu", "cuda:x", "gpu0"):
        with pytest.raises(SenetError, match="expected cuda, cuda:N or a GPU index"):
            cuda_index(bad)


def test_the_default_share_packs_the_point_s_seeds_as_far_as_memory_allows():
    from senet.worker.devices import MAX_PACKED_WORKERS, choose_share

    GiB = 2**30
    # Small CIFAR nets: all 4 seeds in one pack, at most MAX_PACKED_WORKERS packs per GPU.
    share = choose_share(2 * GiB, 80 * GiB, 4, per_gpu=None, pack=None)
    assert (share.pack, share.per_gpu) == (4, MAX_PACKED_WORKERS)
    # 0.9 * 80 / (30 + 0.75) = 2.3: two copies fit, so two seeds per pack, one worker.
    share = choose_share(30 * GiB, 80 * GiB, 4, per_gpu=None, pack=None)
    assert (share.pack, share.per_gpu) == (2, 1)
    # A point with one seed is not packed, and workers follow the memory as before.
    share = choose_share(2 * GiB, 80 * GiB, 1, per_gpu=None, pack=None)
    assert (share.pack, share.per_gpu) == (1, 8)
    # What the user gives is kept.
    share = choose_share(2 * GiB, 80 * GiB, 4, per_gpu=3, pack=1)
    assert (share.pack, share.per_gpu) == (1, 3)
    assert "3 worker(s) per GPU, up to 1 seed(s) packed" in share.line()
