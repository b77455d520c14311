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
