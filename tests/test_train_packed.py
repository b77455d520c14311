"""`senet work --pack`: seeds of one point trained as one packed model end where each
would have ended trained alone (CPU, float32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from senet.engine.train import check_packable, run_training, train_copies
from senet.errors import SenetError, TrainingStopped
from senet.settings.config import TrainConfig
from senet.tracking.store import T_RUN_ID

# The suite's small built-in dataset (conftest.py): 200 validation images.

# Grouped and dense convolutions sum in different orders, so packed and alone agree up to
# float32 rounding, amplified by SGD over the steps. Measured on CPU (resnet20, 2 seeds,
# 2 epochs of 4 steps at lr 0.1, batch 50): parameters differ by at most 7.1e-5 (seed 0)
# and 6.8e-4 (seed 1, conv1.weight); per-epoch train and val losses by at most 3e-5
# relative; val top-1 error by at most 0.05 points (1 image of 2000, with the full
# built-in dataset's validation split).
WEIGHT_ATOL = 2e-3
LOSS_RTOL = 1e-4


# A schedule that does not depend on the number of epochs (cosine would), so a run of 1
# epoch resumed to 2 sees the rates of a 2-epoch run; the drop after epoch 1 checks that
# the packed runner follows the schedule.
PRESET = """
batch_size = 50
[optimizer]
lr = 0.1
momentum = 0.9
weight_decay = 5e-4
nesterov = true
[schedule]
kind = "multistep"
milestones = [1]
"""


def _cfg(tmp_path: Path, seed: int, folder: str, **kw) -> TrainConfig:
    preset = tmp_path / "steps.toml"
    if not preset.exists():
        preset.write_text(PRESET)
    base = dict(model="resnet20", dataset="builtin", preset=str(preset), epochs=2, batch_size=50,
                subset=200, device="cpu", seed=seed, out=str(tmp_path / folder / f"s{seed}"),
                tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment=folder,
                resume=True, tags={"senet.seed": str(seed)}, run_name=f"p s{seed}")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_packed_seeds_match_seeds_trained_alone_and_resume(tmp_path, tracking_uri):
    seeds = [0, 1]
    alone = [run_training(_cfg(tmp_path, s, "alone")) for s in seeds]
    # Packed in two sittings: stopped after one epoch, then resumed from the per-seed
    # checkpoints.
    def stop_after_one(epoch, metrics):
        raise TrainingStopped(f"stopped after epoch {epoch} by the test")

    first = train_copies([_cfg(tmp_path, s, "packed") for s in seeds],
                         on_epoch=[stop_after_one] * 2)
    assert all(isinstance(o, TrainingStopped) for o in first), first
    first_runs = [json.loads((tmp_path / "packed" / f"s{s}" / "run.json").read_text())["run_id"]
                  for s in seeds]
    outcomes = train_copies([_cfg(tmp_path, s, "packed") for s in seeds])
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_ids = set()
    for s, ref, got in zip(seeds, alone, outcomes, strict=True):
        assert isinstance(got, dict), got
        folder = tmp_path / "packed" / f"s{s}"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "FINISHED" and summary["seed"] == s
        assert summary["epochs_done"] == 2
        # Own checkpoint, in run_training's format.
        ck = torch.load(folder / "checkpoint.pt", weights_only=False)
        ck_ref = torch.load(tmp_path / "alone" / f"s{s}" / "checkpoint.pt", weights_only=False)
        assert [h["epoch"] for h in ck["state"]["history"]] == [1, 2]
        # Parameters only: BatchNorm running statistics are checked through the validation
        # loss (computed with them), since running means near zero make relative bounds
        # meaningless.
        worst = max((ck["model"][k].double() - v.double()).abs().max().item()
                    for k, v in ck_ref["model"].items()
                    if v.is_floating_point() and "running" not in k)
        print(f"seed {s}: max |w_packed - w_alone| = {worst:.3g}")
        for h, h_ref in zip(ck["state"]["history"], ck_ref["state"]["history"], strict=True):
            print(f"seed {s} epoch {h['epoch']}: train loss {h['train_loss']:.7f} packed, "
                  f"{h_ref['train_loss']:.7f} alone")
            print(f"seed {s} epoch {h['epoch']}: val loss {h['val_loss']:.7f} packed, "
                  f"{h_ref['val_loss']:.7f} alone")
        assert worst < WEIGHT_ATOL, worst
        for h, h_ref in zip(ck["state"]["history"], ck_ref["state"]["history"], strict=True):
            assert h["train_loss"] == pytest.approx(h_ref["train_loss"], rel=LOSS_RTOL)
            assert h["val_loss"] == pytest.approx(h_ref["val_loss"], rel=LOSS_RTOL)
        # Momentum saved per copy: the plain optimizer can load it.
        assert len(ck["optimizer"]["state"]) == len(ck_ref["optimizer"]["state"])
        # Own MLflow run (the same one across the resume), FINISHED, with the given tags.
        run = client.get_run(got["mlflow_run_id"])
        assert run.info.run_id == first_runs[s]
        run_ids.add(run.info.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["senet.seed"] == str(s)
        assert run.info.run_name == f"p s{s}"
        assert run.data.metrics["final_val_top1_err"] == pytest.approx(
            ref["final_val_top1_err"], abs=0.5)  # at most 1 of 200 val images flips
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert len(run_ids) == 2
    # The two seeds really differ (own initialisation and data order).
    a = torch.load(tmp_path / "packed" / "s0" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "packed" / "s1" / "checkpoint.pt", weights_only=False)
    assert not torch.equal(a["model"]["fc.weight"], b["model"]["fc.weight"])


def test_pack_refuses_points_whose_settings_differ(tmp_path):
    with pytest.raises(SenetError, match="differ in lr") as err:
        check_packable([_cfg(tmp_path, 0, "x"), _cfg(tmp_path, 1, "x", lr=0.5)])
    assert "\n" not in str(err.value)
    with pytest.raises(SenetError, match="the same training"):
        check_packable([_cfg(tmp_path, 0, "x"), _cfg(tmp_path, 0, "y")])


def test_pack_refuses_the_plateau_schedule(tmp_path):
    preset = tmp_path / "plateau.toml"
    preset.write_text('epochs = 1\nbatch_size = 50\n[schedule]\nkind = "plateau"\n')
    with pytest.raises(SenetError, match="plateau"):
        train_copies([_cfg(tmp_path, s, "x", preset=str(preset)) for s in (0, 1)])


@pytest.mark.slow
def test_senet_work_pack_completes_each_seed_ticket(tmp_path, tracking_uri, monkeypatch):
    from senet.cli import main as cli
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage
    from senet.queue.store import TicketStore

    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "pk.toml"
    grid.write_text('name = "pk"\ndataset = "builtin"\npreset = "fast"\n'
                    'model = "resnet20"\nepochs = 1\n'
                    'subset = 100\nbatch_size = 50\nworkers = 0\nseeds = [0, 1]\n'
                    '[axes]\nlr = [0.1]\n')
    storage = str(tmp_path / "q.journal")
    assert cli(["queue", str(grid), "--storage", storage, "--tracking-uri", tracking_uri]) == 0
    runs = tmp_path / "runs"
    assert cli(["work", "pk", "--storage", storage, "--runs-dir", str(runs),
                "--devices", "cpu", "--pack", "2"]) == 0
    queue = q.GridQueue.open(TicketStore(open_storage(storage, create=False)), "pk")
    tickets = queue.tickets()
    assert sorted(t.seed for t in tickets) == [0, 1]
    assert all(t.state.name == "COMPLETE" for t in tickets)
    client = MlflowClient(tracking_uri)
    run_ids = {t.attrs[T_RUN_ID] for t in tickets}
    assert len(run_ids) == 2
    for t in tickets:
        folder = next(p.parent for p in runs.glob("**/summary.json")  # folders are keyed
                      if json.loads(p.read_text())["mlflow_run_id"] == t.attrs[T_RUN_ID])
        attempts = [json.loads(line) for line in
                    (folder / "attempts.jsonl").read_text().splitlines()]
        assert attempts[0]["packed"] == "0, 1" and attempts[-1]["outcome"] == "done"
        summary = json.loads((folder / "summary.json").read_text())
        run = client.get_run(summary["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["senet.pack_size"] == "2"
        assert summary["mlflow_run_id"] in run_ids
        assert t.value == pytest.approx(summary["final_val_top1_err"])


@pytest.mark.slow
def test_a_non_finite_copy_fails_alone_and_the_others_finish(tmp_path, tracking_uri):
    from senet.errors import TrainingFailed

    seeds = [5, 6]

    def stop_after_one(epoch, metrics):
        raise TrainingStopped(f"stopped after epoch {epoch} by the test")

    train_copies([_cfg(tmp_path, s, "nan", epochs=3, subset=100) for s in seeds],
                 on_epoch=[stop_after_one] * 2)
    # Poison seed 6's checkpoint: its first packed step gives a non-finite loss.
    path = tmp_path / "nan" / "s6" / "checkpoint.pt"
    ck = torch.load(path, weights_only=False)
    ck["model"]["fc.weight"].fill_(float("inf"))
    torch.save(ck, path)
    good, bad = train_copies([_cfg(tmp_path, s, "nan", epochs=3, subset=100) for s in seeds])
    assert isinstance(good, dict) and good["epochs_done"] == 3
    assert isinstance(bad, TrainingFailed) and "non-finite" in str(bad)
    failed = json.loads((tmp_path / "nan" / "s6" / "summary.json").read_text())
    assert failed["status"] == "FAILED" and failed["epochs_done"] == 1
    assert torch.load(path, weights_only=False)["state"]["epoch"] == 1  # last good one kept
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_run(good["mlflow_run_id"]).info.status == "FINISHED"
    assert client.get_run(failed["mlflow_run_id"]).info.status == "FAILED"


@pytest.mark.slow
def test_points_of_a_grid_packed_together_match_each_trained_alone(tmp_path, tracking_uri):
    """Two points that differ in r and the gate, one packed model: each copy ends where it
    would alone, and its summary and MLflow run count its own parameters."""
    options = [{"reduction": 4}, {"reduction": 16, "gate": "tanh"}]

    def cfg(k: int, folder: str) -> TrainConfig:
        return _cfg(tmp_path, 0, folder, model="se_resnet20", epochs=1, subset=100,
                    model_options=dict(options[k]), out=str(tmp_path / folder / f"p{k}"),
                    tags={"senet.seed": "0", "senet.point": f"p{k}"})

    alone = [run_training(cfg(k, "alone")) for k in range(2)]
    packed = train_copies([cfg(k, "packed") for k in range(2)])
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for k in range(2):
        assert isinstance(packed[k], dict), packed[k]
        assert packed[k]["params"] == alone[k]["params"]
        a = torch.load(tmp_path / "alone" / f"p{k}" / "checkpoint.pt", weights_only=False)
        b = torch.load(tmp_path / "packed" / f"p{k}" / "checkpoint.pt", weights_only=False)
        assert a["model"].keys() == b["model"].keys()
        worst = max((b["model"][n].double() - v.double()).abs().max().item()
                    for n, v in a["model"].items() if v.is_floating_point() and "running" not in n)
        assert worst < WEIGHT_ATOL, (k, worst)
        run = client.get_run(packed[k]["mlflow_run_id"])
        assert run.data.params["reduction"] == str(options[k]["reduction"])
        assert run.data.metrics["params"] == alone[k]["params"]
    assert packed[0]["params"] > packed[1]["params"]  # r = 4 has the wider SE
