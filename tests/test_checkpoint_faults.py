"""Issue 23 for one training's files: a full disk while the checkpoint is written, a
checkpoint crafted to run code, and the corrupt-checkpoint advice followed to the end."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType

from senet.cli import main as cli_main
from senet.engine import checkpoint
from senet.tracking.recorder import Recorder
from senet.tracking.store import TAG_FAIL_REASON, TAG_STOP_REASON

QUICK = ["--subset", "100", "--batch-size", "50", "--device", "cpu"]


def _train(tmp_path: Path, uri: str, *extra: str, epochs: int = 2) -> int:
    return cli_main(["train", "resnet20", *QUICK, "--epochs", str(epochs),
                     "--out", str(tmp_path / "run"), "--tracking-uri", uri, *extra])


def _runs(uri: str, view: int = ViewType.ACTIVE_ONLY) -> list:
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, "", run_view_type=view)


def _steps(uri: str, run_id: str) -> list[int]:
    return [m.step for m in MlflowClient(uri).get_metric_history(run_id, "val_top1_err")]


def test_a_full_disk_is_one_line_leaves_no_temp_file_and_the_resumed_run_is_clean(
        tmp_path, tracking_uri, capsys):
    run = tmp_path / "run"
    run.mkdir()
    # The kernel's own "No space left on device": the temporary file is /dev/full.
    os.symlink("/dev/full", run / "checkpoint.pt.tmp")
    assert _train(tmp_path, tracking_uri) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on " in err[0]
    assert f"writing {run / 'checkpoint.pt'}" in err[0]
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "run.json"]
    (failed,) = _runs(tracking_uri)
    assert failed.info.status == "FAILED" and "no space left" in failed.data.tags[TAG_FAIL_REASON]

    assert _train(tmp_path, tracking_uri, "--resume") == 0
    (resumed,) = _runs(tracking_uri)
    assert resumed.info.run_id == failed.info.run_id and resumed.info.status == "FINISHED"
    assert not {TAG_FAIL_REASON, TAG_STOP_REASON} & set(resumed.data.tags)
    assert _steps(tracking_uri, resumed.info.run_id) == [1, 2]


def test_a_checkpoint_that_would_run_code_is_refused_before_it_runs(tmp_path, tracking_uri,
                                                                    capsys):
    marker = tmp_path / "code-ran"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "run").mkdir()
    torch.save({"model": RunsCode()}, tmp_path / "run" / "checkpoint.pt")
    assert _train(tmp_path, tracking_uri, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GLOBAL posix.system" in err[0] and "refused" in err[0]
    assert not marker.exists()


def test_a_checkpoint_senet_wrote_loads_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()

    class Schedule:
        def state_dict(self):
            return {"drops": 1, "best_loss": float("inf"), "finished": False}

    path = tmp_path / "checkpoint.pt"
    checkpoint.save_training(path, model=model, optimizer=optimizer, schedule=Schedule(),
                             state={"epoch": 3, "history": [{"epoch": 1, "val_loss": 2.5}],
                                    "run_id": "abc", "wall": 1.5})
    ckpt = checkpoint.load(path, torch.device("cpu"))
    assert ckpt["state"]["epoch"] == 3 and ckpt["schedule"]["drops"] == 1
    assert torch.equal(ckpt["model"]["weight"], model.state_dict()["weight"])


def test_following_the_corrupt_checkpoint_advice_logs_each_step_once(tmp_path, tracking_uri,
                                                                      capsys):
    assert _train(tmp_path, tracking_uri) == 0
    (first,) = _runs(tracking_uri)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    (tmp_path / "run" / "summary.json").unlink()  # as if it stopped before its end
    ckpt.write_bytes(b"\0" * 4096)
    capsys.readouterr()
    assert _train(tmp_path, tracking_uri, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "delete it and run the same command with --resume" in err[0]

    ckpt.unlink()  # the advice
    assert _train(tmp_path, tracking_uri, "--resume") == 0
    (now,) = _runs(tracking_uri)
    assert now.info.run_id != first.info.run_id and now.info.status == "FINISHED"
    assert _steps(tracking_uri, now.info.run_id) == [1, 2]
    (trashed,) = _runs(tracking_uri, ViewType.DELETED_ONLY)
    assert trashed.info.run_id == first.info.run_id
    assert "started over at epoch 1" in trashed.data.tags[TAG_FAIL_REASON]


def test_a_grid_point_restarting_at_epoch_1_retires_its_unfinished_run(tracking_uri):
    """The same for a grid worker, whose run is found by the point's identity tags."""
    from senet.tracking.restart import run_to_continue

    tags = {"senet.grid": "g", "senet.point": "p1", "senet.seed": "0"}
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("g")
    logged = client.create_run(exp, tags=tags).info.run_id
    client.log_metric(logged, "val_top1_err", 50.0, step=1)
    empty = client.create_run(exp, tags={**tags, "senet.seed": "1"}).info.run_id
    tracker = Recorder(tracking_uri, "g")
    said: list[str] = []
    assert run_to_continue(tracker, None, tags, said.append) is None
    assert client.get_run(logged).info.lifecycle_stage == "deleted" and len(said) == 1
    # killed before its first epoch: continued as before
    assert run_to_continue(tracker, empty, {**tags, "senet.seed": "1"}, said.append) == empty
    assert client.get_run(empty).info.lifecycle_stage == "active" and len(said) == 1
