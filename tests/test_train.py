"""End-to-end training on the built-in dataset: MLflow record, exact resume, divergence."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import fork_cli, quick_config
from mlflow.tracking import MlflowClient

from senet.cli import main as cli_main
from senet.engine.train import run_training
from senet.errors import SenetError, TrainingFailed
from senet.settings.config import TrainConfig

# The small built-in dataset (conftest), and MLflow stores copied from a migrated one.

QUICK = ["--subset", "200", "--batch-size", "50", "--device", "cpu"]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    return quick_config(tmp_path, **kw)


@pytest.mark.slow
def test_a_run_leaves_a_complete_mlflow_record(tmp_path, tracking_uri):
    cfg = _cfg(tmp_path, model_options={"reduction": 4})
    summary = run_training(cfg)
    assert summary["status"] == "FINISHED" and summary["epochs_done"] == 2
    assert 0 <= summary["final_val_top1_err"] <= 100
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["mlflow_run_id"] == summary["mlflow_run_id"]

    client = MlflowClient(cfg.tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["reduction"] == "4" and p["squeeze"] == "avg" and p["preset"] == "fast"
    assert p["seed"] == "0" and p["batch_size"] == "50" and p["epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "val_top1_err")
    assert [m.step for m in history] == [1, 2]
    for key in ("train_loss", "train_top1_err", "val_top5_err", "lr", "img_per_s"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2
    m = run.data.metrics
    assert m["final_val_top1_err"] == summary["final_val_top1_err"]
    assert m["params"] > 0 and m["gmacs"] > 0 and m["wall_time_s"] > 0
    assert run.data.tags["senet.version"] and run.data.tags["senet.device"] == "cpu"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "excitation", "config.json", "summary.json"} <= artifacts
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.name == "builtin"


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_same_result(tmp_path, tracking_uri, _mlflow_template,
                                                       one_thread):
    # Two epochs: the kill keeps epoch 1, the resumed run trains epoch 2 from it; a third
    # epoch would only repeat that step, at the cost of two more epochs here.
    common = ["train", "se_resnet20", *QUICK, "--epochs", "2"]
    assert cli_main([*common, "--out", str(tmp_path / "straight"),
                     "--tracking-uri", tracking_uri]) == 0
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())

    # Killed in its own process (SIGKILL) just after writing the first checkpoint, before
    # epoch 1's metrics reach MLflow; its own store, which this process has not opened.
    killed_db = tmp_path / "killed.db"
    shutil.copy(_mlflow_template, killed_db)
    uri = f"sqlite:///{killed_db}"
    out = tmp_path / "killed"
    args = [*common, "--out", str(out), "--tracking-uri", uri]
    assert fork_cli(args, kill_self_at="senet.engine.checkpoint.save_training", after=True) == \
        -signal.SIGKILL
    assert (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1
    assert cli_main([*args, "--resume"]) == 0
    resumed = json.loads((out / "summary.json").read_text())
    for key in ("final_val_top1_err", "final_val_top5_err", "best_val_top1_err"):
        assert resumed[key] == straight[key], key
    mine = torch.load(out / "weights.pt")
    for name, value in torch.load(tmp_path / "straight" / "weights.pt").items():
        assert torch.equal(mine[name], value), name
    # the resumed training continued the same MLflow run instead of leaving an orphan,
    # and logged the epoch the kill kept from MLflow
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("senet").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id == resumed["mlflow_run_id"]
    history = client.get_metric_history(run.info.run_id, "val_top1_err")
    assert sorted(m.step for m in history) == [1, 2]


def test_existing_checkpoint_without_resume_is_refused(tmp_path, tracking_uri):
    run_training(_cfg(tmp_path, epochs=1))
    with pytest.raises(SenetError, match="--resume"):
        run_training(_cfg(tmp_path, epochs=1))


def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tracking_uri,
                                                                        capsys):
    # a user's own preset file: a sane first epoch, then the rate jumps to an absurd one
    preset = tmp_path / "explode.toml"
    preset.write_text('epochs = 4\nbatch_size = 50\n[optimizer]\nlr = 0.05\n'
                      '[schedule]\nkind = "step"\nstep_size = 1\ngamma = 1e30\n')
    ckpt = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(TrainingFailed, match="non-finite") as err:
        run_training(_cfg(tmp_path, epochs=4, preset=str(preset)))
    assert "checkpoint of the last good epoch is kept" in str(err.value)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "FAILED" and 1 <= summary["epochs_done"] < 4
    # the checkpoint on disk is the last epoch that ended with a finite loss
    kept = torch.load(ckpt, weights_only=False)
    assert kept["state"]["epoch"] == summary["epochs_done"]
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["senet.fail_reason"]

    code = cli_main(["train", "se_resnet20", *QUICK, "--epochs", "1", "--lr", "1e30",
                     "--preset", str(preset),
                     "--out", str(tmp_path / "cli"),
                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("senet train: error: ") and "non-finite" in err[-1]
    assert "no checkpoint was written" in err[-1]


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    uri = ["--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--out", str(tmp_path / "x")]
    assert cli_main(["train", "se_resnet20", "--set", "gate=softmax", *uri]) == 2
    assert "gate" in capsys.readouterr().err
    assert cli_main(["train", "se_resnet20", "--preset", "nope", *uri]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert cli_main(["train", "se_resnet20", "--dataset", "mnist", *uri]) == 2
    assert "mnist" in capsys.readouterr().err
    assert cli_main(["train", "se_resnet20", "--device", "gpu0", *uri]) == 2
    assert "--device 'gpu0': expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():  # where CUDA exists, cuda:0 is a valid device
        assert cli_main(["train", "se_resnet20", "--device", "cuda:0", *uri]) == 2
        assert "--device cuda:0: CUDA is not available here" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()  # no tracking store made for a mistyped command


def test_a_folder_dataset_trains_and_is_logged_as_a_local_source(tmp_path, tracking_uri,
                                                               monkeypatch):
    from PIL import Image

    monkeypatch.setenv("SENET_CACHE", str(tmp_path / "cache"))
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in range(3):
            folder = tmp_path / "tree" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (torch.rand(16, 16, 3, generator=gen) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    cfg = _cfg(tmp_path, dataset=f"folder:{tmp_path / 'tree'}", subset=None, batch_size=6,
               epochs=1)
    summary = run_training(cfg)
    run = MlflowClient(cfg.tracking_uri).get_run(summary["mlflow_run_id"])
    source = json.loads(run.inputs.dataset_inputs[0].dataset.source)
    assert str(tmp_path / "tree") in json.dumps(source)


def test_unreachable_tracking_server_is_one_line_before_any_training(tmp_path, capsys):
    code = cli_main(["train", "se_resnet20", *QUICK, "--epochs", "1",
                     "--out", str(tmp_path / "x"), "--tracking-uri", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "cannot reach MLflow tracking server http://127.0.0.1:9" in err[0]
    assert not (tmp_path / "x" / "checkpoint.pt").exists()
