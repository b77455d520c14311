"""The command line's own behaviour: --version, shared flags, grid names, device checks,
and `senet work`'s exit code and retry line when points fail."""

from __future__ import annotations

import shlex

import pytest
import torch

import senet
from senet.cli import main

BROKEN_GRID = """
title = "broken data"
dataset = "folder:{data}"
preset = "fast"
model = "resnet20"
epochs = 1
batch_size = 2
seeds = [{seed}]
workers = 0
[axes]
lr = [0.1, 0.2]
"""


def _broken_tree(root):
    """Two classes of files that look like images but are not: every point fails at once."""
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                (folder / f"{i}.png").write_bytes(b"not a png")
    return root


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"senet {senet.__version__}"


def test_queue_work_and_status_all_take_storage_and_tracking_uri():
    from senet.cli import build_parser

    parser = build_parser()
    for command in (["queue", "demo"], ["work"], ["status"]):
        args = parser.parse_args([*command, "--storage", "s.journal", "--tracking-uri", "x://y"])
        assert (args.storage, args.tracking_uri) == ("s.journal", "x://y")


def fake_cifar10(root):
    """The torchvision CIFAR-10 release's file names, empty: what `senet queue` checks is
    that the workers will find them (it reads no batch)."""
    from senet.data.cifar import SPECS

    spec = SPECS["cifar10"]
    folder = root / spec.folder
    folder.mkdir(parents=True)
    for name in (*spec.train_files, *spec.test_files, spec.meta_file):
        (folder / name).touch()
    return root


def test_a_known_grid_name_with_toml_is_accepted(tmp_path, tracking_uri, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SENET_DATA", raising=False)
    fake_cifar10(tmp_path / "data")  # ./data: where workers look by default
    storage = str(tmp_path / "q.journal")
    args = ["--storage", storage, "--tracking-uri", tracking_uri, "--seeds", "1"]
    assert main(["queue", "cifar10/reduction.toml", *args]) == 0
    assert capsys.readouterr().out.startswith("cifar10/reduction: ")
    assert main(["status", "cifar10/reduction.toml", "--storage", storage,
                 "--tracking-uri", tracking_uri]) == 0
    assert "cifar10/reduction" in capsys.readouterr().out
    assert main(["queue", "cifar10/nope.toml", *args]) == 2
    assert "grid file cifar10/nope.toml does not exist" in _one_error_line(capsys)


def test_work_refuses_gpus_that_are_not_there(tmp_path, capsys):
    storage = ["--storage", str(tmp_path / "q.journal")]
    assert main(["work", *storage, "--devices", "98,99"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("senet work: error: --devices 98,99: ")
    assert "no CUDA GPU" in line or "no GPU 98, 99 here" in line
    if torch.cuda.device_count() < 2:
        assert main(["work", *storage, "--devices", "0,1"]) == 2
        assert "--devices 0,1: " in _one_error_line(capsys)
    assert not (tmp_path / "q.journal").exists()  # refused before the queue was opened


def test_work_all_exits_non_zero_and_names_the_retry_when_points_fail(
    tmp_path, tracking_uri, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENET_SYSTEM_METRICS", "0")
    data = _broken_tree(tmp_path / "tree")
    grids = []
    for seed, name in enumerate(("first", "second")):  # other seeds: no training in common
        grids.append(tmp_path / "grids" / f"{name}.toml")
        grids[-1].parent.mkdir(exist_ok=True)
        grids[-1].write_text(BROKEN_GRID.format(data=data, seed=seed))
    storage = str(tmp_path / "q.journal")
    stores = ["--storage", storage, "--tracking-uri", tracking_uri]
    assert main(["queue", *map(str, grids), *stores]) == 0
    capsys.readouterr()

    assert main(["work", "--all", *stores, "--devices", "cpu"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("senet work: 4 point(s) failed; retry them with: senet queue ")
    # --all worked both grids
    assert main(["status", "--storage", storage, "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert {name: r["failed"] for name, r in report.items()} == {"grids/first": 2,
                                                                  "grids/second": 2}

    # the printed command queues exactly the failed points again, run from anywhere
    monkeypatch.chdir(tmp_path / "grids")
    retry = last.split("retry them with: ", 1)[1]
    queue_part, work_part = retry.split(" && ")
    argv = shlex.split(queue_part)
    assert argv[:2] == ["senet", "queue"] and shlex.split(work_part)[:2] == ["senet", "work"]
    assert main(argv[1:]) == 0
    printed = capsys.readouterr().out
    assert printed.count("2 failed ones again") == 2

    # status prints the same kind of hint, and it works too
    assert main(["work", *stores]) == 1
    capsys.readouterr()
    assert main(["status", "--storage", storage, "--tracking-uri", tracking_uri]) == 0
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    assert hint.startswith("  (queue them again with `senet queue ")
    argv = shlex.split(hint.split("`")[1])
    assert main(argv[1:]) == 0
    assert capsys.readouterr().out.count("2 failed ones again") == 2


@pytest.mark.parametrize("argv", [["describe", "se_resnet20"], ["--help"], ["describe", "--help"]])
def test_a_pipe_closed_early_ends_quietly(argv, tmp_path):
    """`senet ... | head`: the reader is gone before senet writes; no traceback, and the
    exit status is a closed pipe's (141) or 0 for --help."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "senet", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode in (0, 141)
