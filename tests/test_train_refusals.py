"""`senet train` at the edges a new user meets: Ctrl-C, --resume with nothing to resume,
and a refused command, through the real command."""

from __future__ import annotations

import shlex

from mlflow.tracking import MlflowClient
from PIL import Image

from senet.cli import main as cli_main

QUICK = ["--subset", "100", "--batch-size", "50", "--device", "cpu", "--epochs", "2"]


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_ctrl_c_leaves_the_run_killed_and_prints_the_command_that_continues_it(
        tmp_path, tracking_uri, monkeypatch, capsys):
    from senet.engine import hooks

    out = tmp_path / "run"
    args = ["train", "resnet20", *QUICK, "--out", str(out), "--tracking-uri", tracking_uri]
    real_epoch = hooks.EpochLine.epoch

    def interrupt_after_epoch_one(self, c, run, epoch, metrics, pack_size):
        real_epoch(self, c, run, epoch, metrics, pack_size)
        raise KeyboardInterrupt  # what Ctrl-C raises, at a known point of the training

    monkeypatch.setattr(hooks.EpochLine, "epoch", interrupt_after_epoch_one)
    assert cli_main(args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the MLflow run is KILLED" in err[0], err
    again = shlex.split(err[0].split("continue with: ", 1)[1])
    assert again[:2] == ["senet", "train"] and "--resume" in again
    (run,) = _runs(tracking_uri)
    assert run.info.status == "KILLED"
    monkeypatch.setattr(hooks.EpochLine, "epoch", real_epoch)
    assert cli_main(again[1:]) == 0  # the printed command finishes the same run
    (run,) = _runs(tracking_uri)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in MlflowClient(tracking_uri).get_metric_history(run.info.run_id,
                                                                           "val_top1_err")]
    assert steps == [1, 2]


def test_resume_with_nothing_to_resume_says_so(tmp_path, tracking_uri, capsys):
    out = tmp_path / "fresh"
    assert cli_main(["train", "resnet20", *QUICK, "--epochs", "1", "--out", str(out),
                     "--tracking-uri", tracking_uri, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"--resume: nothing to resume in {out} (no checkpoint yet); training from the start" \
        in printed


def test_a_refused_command_leaves_nothing_behind(tmp_path, capsys):
    tree = tmp_path / "pics"
    for split in ("train", "test"):
        for c, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
            (tree / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (32, 32), colour).save(tree / split / c / f"{i}.jpg")
    (tree / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    db, out = tmp_path / "store" / "mlflow.db", tmp_path / "runs" / "x"
    db.parent.mkdir()
    code = cli_main(["train", "resnet20", "--dataset", f"folder:{tree}", "--device", "cpu",
                     "--out", str(out), "--tracking-uri", f"sqlite:///{db}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "broken.jpg" in err[0], err
    assert not db.exists() and not out.exists() and not (tmp_path / "runs").exists()
