"""Issue 13 for one training: a new store opened by many processes at once, diverged runs,
resume bookkeeping, and inputs that must fail in one line before anything is recorded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
import warm_procs
from conftest import fork_cli, quick_config, wait_for
from mlflow.tracking import MlflowClient

from senet.cli import main as cli_main
from senet.engine.train import run_training
from senet.errors import TrainingFailed, TrainingStopped
from senet.settings.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--subset", "200", "--batch-size", "50", "--device", "cpu"]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    return quick_config(tmp_path, **{"model": "resnet20", "epochs": 1, **kw})


def _env() -> dict[str, str]:
    return {**os.environ, "SENET_SYSTEM_METRICS": "0", "PYTHONPATH": str(REPO)}


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, "")


# ---------------------------------------------------------------------------
# 1. a new SQLite store, first used by several processes at the same moment

def _open_together(uri: str, folder: str, name: str) -> None:
    """A process's main: say it is ready, spin until the test creates the go file (so all of
    them open the new store within a millisecond or so of each other), then record a run."""
    from senet.tracking.recorder import Recorder

    (Path(folder) / f"ready-{name}").touch()
    deadline = time.monotonic() + 120
    while not (Path(folder) / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    recorder = Recorder(uri, "shared")
    recorder.start(run_id=None, tags={}, parent_run_id=None, run_name=name)
    recorder.log_metrics({"x": 1.0}, step=1)
    recorder.finish("FINISHED")


def test_processes_starting_together_on_a_new_store_all_record_their_runs(tmp_path):
    from senet.tracking.recorder import Recorder

    db = tmp_path / "fresh" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    names = [f"p{i}" for i in range(4)]
    # Separate processes, forked from a warm interpreter (tests/warm_procs.py) that has
    # imported MLflow but never opened a store.
    ctx = warm_procs.context()
    procs = [ctx.Process(target=_open_together, args=(uri, str(tmp_path), name))
             for name in names]
    for p in procs:
        p.start()
    wait_for(lambda: all((tmp_path / f"ready-{n}").exists() for n in names)
              or any(p.exitcode is not None for p in procs), 240, "every process to be ready")
    assert not db.exists(), "a process opened the store before the common start"
    (tmp_path / "go").touch()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    runs = _runs(uri)
    assert sorted(r.info.run_name for r in runs) == names
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert (db.parent / "mlflow.db.lock").exists()
    # the store is whole afterwards: a later process (this one) can use it
    recorder = Recorder(uri, "shared")
    recorder.start(run_id=None, tags={}, parent_run_id=None, run_name="later")
    recorder.log_metrics({"x": 1.0}, step=1)
    recorder.finish("FINISHED")
    assert len(_runs(uri)) == 5


def test_a_store_that_cannot_be_created_fails_in_seconds(tmp_path, capsys):
    t0 = time.monotonic()
    code = cli_main(["train", "resnet20", *QUICK, "--epochs", "1", "--out", str(tmp_path / "x"),
                     "--tracking-uri", f"sqlite:///{tmp_path}/missing/m.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing" in err[0]
    assert time.monotonic() - t0 < 30


# ---------------------------------------------------------------------------
# 2. diverged runs are FAILED, never FINISHED


@pytest.mark.parametrize("lr", ["nan", "-1", "inf", "0"])
def test_impossible_learning_rates_are_refused_before_anything_is_recorded(tmp_path, capsys, lr):
    code = cli_main(["train", "resnet20", *QUICK, "--epochs", "1", "--lr", lr,
                     "--out", str(tmp_path / "x"), "--tracking-uri",
                     f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--lr {lr}" in err[0]
    assert not (tmp_path / "m.db").exists()


def test_a_huge_rate_fails_the_run_and_claims_no_checkpoint(tmp_path, tracking_uri):
    # On the fast preset its losses stay finite (near 1e26) yet the model is ruined.
    cfg = _cfg(tmp_path, lr=1e6)
    with pytest.raises(TrainingFailed, match="the training diverged") as err:
        run_training(cfg)
    assert "checkpoint of the last good epoch is kept" not in str(err.value)
    assert "no checkpoint was written" in str(err.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "FAILED" and summary["epochs_done"] == 0
    (run,) = _runs(cfg.tracking_uri)
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags["senet.fail_reason"]
    assert "final_val_top1_err" not in run.data.metrics


# ---------------------------------------------------------------------------
# 4. resume bookkeeping


def test_a_kill_before_the_first_checkpoint_is_continued_in_the_same_run(tmp_path, tracking_uri):
    out = tmp_path / "run"
    args = ["train", "resnet20", *QUICK, "--epochs", "1", "--out", str(out),
            "--tracking-uri", tracking_uri]
    # SIGKILLed in its own process as its first epoch begins: the MLflow run is open and
    # recorded beside the checkpoint-to-be, no checkpoint exists yet.
    assert fork_cli(args, kill_self_at="senet.engine.train.train_epoch") == -signal.SIGKILL
    assert not (out / "checkpoint.pt").exists()
    first = json.loads((out / "run.json").read_text())["run_id"]
    assert [r.info.status for r in _runs(tracking_uri)] == ["RUNNING"]

    assert cli_main([*args, "--resume"]) == 0
    runs = _runs(tracking_uri)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(first, "FINISHED")]
    assert len(MlflowClient(tracking_uri).get_metric_history(first, "val_top1_err")) == 1


def test_resuming_a_finished_run_says_so_and_records_nothing(tmp_path, tracking_uri):
    cfg = _cfg(tmp_path)
    summary = run_training(cfg)
    lines: list[str] = []
    cfg.resume = True
    again = run_training(cfg, log=lines.append)
    assert again["final_val_top1_err"] == summary["final_val_top1_err"]
    assert any("already finished" in line for line in lines), lines
    (run,) = _runs(cfg.tracking_uri)
    client = MlflowClient(cfg.tracking_uri)
    for key in ("final_val_top1_err", "gmacs", "wall_time_s", "val_top1_err"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key


def test_a_finish_interrupted_and_resumed_logs_the_final_metrics_once(tmp_path, tracking_uri):
    cfg = _cfg(tmp_path)
    summary = run_training(cfg)
    client = MlflowClient(cfg.tracking_uri)
    run_id = summary["mlflow_run_id"]
    # as if killed after logging the final metrics, before the run was closed
    client.update_run(run_id, status="RUNNING")
    (tmp_path / "run" / "summary.json").unlink()
    cfg.resume = True
    again = run_training(cfg)
    assert again["mlflow_run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("final_val_top1_err", "best_val_top5_err", "params", "gmacs", "wall_time_s"):
        assert len(client.get_metric_history(run_id, key)) == 1, key
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "FINISHED"


def test_resume_with_other_settings_is_refused_in_one_line(tmp_path, tracking_uri, capsys):
    run_training(_cfg(tmp_path))
    common = ["train", "resnet20", *QUICK, "--out", str(tmp_path / "run"), "--tracking-uri",
              f"sqlite:///{tmp_path}/mlflow.db", "--experiment", "test", "--resume"]
    assert cli_main([*common, "--epochs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume: epochs is 5 now" in err[0] and "epochs 1" in err[0]
    # another model's checkpoint in the folder
    common[1] = "se_resnet20"
    assert cli_main([*common, "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model is se_resnet20 now" in err[0] and "checkpoint" in err[0]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    (run,) = _runs(uri)  # nothing new was recorded
    assert run.info.status == "FINISHED"
    assert len(MlflowClient(uri).get_metric_history(run.info.run_id, "val_top1_err")) == 1


def test_on_epoch_sees_each_epoch_and_can_stop_the_run(tmp_path, tracking_uri):
    seen: list[tuple[int, float]] = []

    def prune(epoch: int, metrics: dict) -> None:
        seen.append((epoch, metrics["val_top1_err"]))
        raise TrainingStopped("pruned by the search")

    cfg = _cfg(tmp_path, epochs=3)
    with pytest.raises(TrainingStopped):
        run_training(cfg, on_epoch=prune)
    assert len(seen) == 1 and seen[0][0] == 1 and 0 <= seen[0][1] <= 100
    (run,) = _runs(cfg.tracking_uri)
    assert run.info.status == "KILLED" and run.data.tags["senet.stop_reason"]
    assert run.data.params["step_path"] == "eager" and run.data.params["compile"] == "False"


# ---------------------------------------------------------------------------
# One line, before anything is recorded


def _one_class_tree(root: Path) -> None:
    from PIL import Image

    for split, n in (("train", 8), ("test", 2)):
        folder = root / split / "cat"
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = (torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_inputs_that_cannot_train_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SENET_CACHE", str(tmp_path / "cache"))
    _one_class_tree(tmp_path / "one")
    base = ["train", "resnet20", "--device", "cpu", "--subset", "200",
            "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    cases = [
        (["--epochs", "0"], "--epochs 0: expected an integer >= 1"),
        (["--batch-size", "0"], "--batch-size 0: expected an integer >= 1"),
        (["--epochs", "1", "--set", "num_classes=3"], "--set num_classes=3: dataset builtin "
                                                      "has 10 classes"),
        (["--epochs", "1", "--preset", "/nope/x.toml"], "preset file /nope/x.toml does not "
                                                        "exist"),
        (["--epochs", "1", "--batch-size", "4", "--dataset", f"folder:{tmp_path / 'one'}"],
         "has 1 class folder; a classifier needs at least 2 classes"),
    ]
    for i, (extra, expected) in enumerate(cases):
        code = cli_main([*base, *extra, "--out", str(tmp_path / f"o{i}")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], (extra, err)
    assert not (tmp_path / "m.db").exists()  # refused before the store was touched


# Every case in one process (one import of torch and MLflow): each is `senet ARGS` through
# the CLI's entry point, its stderr (file descriptor 2) caught on its own, and timed.
CLI_CASES = textwrap.dedent("""
    import json, os, sys, tempfile, time, traceback
    from senet.cli import main
    print("started", flush=True)
    results = []
    for args in json.loads(sys.argv[1]):
        saved = os.dup(2)
        with tempfile.TemporaryFile("w+") as err:
            sys.stderr.flush()
            os.dup2(err.fileno(), 2)
            t0 = time.monotonic()
            try:
                code = main(args)
            except BaseException:
                traceback.print_exc()
                code = 1
            took = time.monotonic() - t0
            sys.stderr.flush()
            os.dup2(saved, 2)
            err.seek(0)
            results.append({"code": code, "stderr": err.read(), "took": took})
    print(json.dumps(results))
""")


def _as_nobody(cases: list[list[str]], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", CLI_CASES, json.dumps(cases)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                    reason="running as root without setpriv: root may write anywhere")
def test_unwritable_places_are_one_line_errors_within_seconds(_mlflow_template):
    # pytest's own temporary folders are private to root: work where `nobody` may enter
    tmp_path = Path(tempfile.mkdtemp(prefix="senet-faults-"))
    os.chmod(tmp_path, 0o777)
    db = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_template, db)
    tracking_uri = f"sqlite:///{db}"
    os.chmod(db, 0o444)
    (tmp_path / "locked").mkdir()
    (tmp_path / "sealed").mkdir()
    os.chmod(tmp_path / "locked", 0o555)
    os.chmod(tmp_path / "sealed", 0o555)
    tiny = ["train", "resnet20", *QUICK, "--epochs", "1"]
    cases = [
        ([*tiny, "--out", "locked/run", "--tracking-uri", f"sqlite:///{tmp_path}/new.db"],
         "--out locked/run: cannot write there"),
        ([*tiny, "--out", "a", "--tracking-uri", tracking_uri],
         "attempt to write a readonly database"),
        ([*tiny, "--out", "b", "--tracking-uri", "sqlite:///sealed/m.db"],
         "sealed: the folder is not writable"),
    ]
    proc = _as_nobody([args for args, _ in cases], tmp_path)
    if proc.returncode != 0 and "started" not in proc.stdout:
        # e.g. a checkout inside a folder private to root
        shutil.rmtree(tmp_path, ignore_errors=True)
        pytest.skip("the unprivileged user `nobody` cannot run senet from this checkout "
                    f"({(proc.stderr.strip().splitlines() or ['?'])[-1]}); as root every "
                    "folder is writable, so these cases need that user")
    assert proc.returncode == 0, proc.stderr[-600:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (_, expected), got in zip(cases, results, strict=True):
        err = [line for line in got["stderr"].splitlines() if line.strip()]
        assert got["code"] == 2 and "Traceback" not in got["stderr"], got["stderr"][-600:]
        assert expected in err[-1], err[-1]
        assert got["took"] < 60, got["took"]
    assert not (tmp_path / "a" / "checkpoint.pt").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------------------
# Issue 9 wiring that the CPU can check


def test_cuda_graphs_flag_reaches_the_config_and_stays_off_where_it_cannot_run():
    from senet.cli import build_parser
    from senet.data import load_data
    from senet.engine.train import use_graphs

    parser = build_parser()
    assert parser.parse_args(["train", "resnet20"]).cuda_graphs is True
    assert parser.parse_args(["train", "resnet20", "--no-cuda-graphs"]).cuda_graphs is False
    assert TrainConfig(model="resnet20").cuda_graphs is True
    data = load_data("builtin", root=None, device=torch.device("cpu"), subset=200, seed=0,
                     batch_size=50)
    cfg = TrainConfig(model="resnet20")
    assert not use_graphs(cfg, torch.device("cpu"), data, 1, False)  # CPU: the eager step


def test_compiled_trainings_share_one_inductor_cache(tmp_path, monkeypatch):
    from senet.engine.train import share_inductor_cache

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("SENET_CACHE", str(tmp_path / "cache"))
    share_inductor_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/mine")
    share_inductor_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/mine"  # the user's choice stays
