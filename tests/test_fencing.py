"""Fencing: a worker that lost its claim on a training never writes to it again.

Worker A trains; part-way through, worker B claims the same training (a newer ticket,
so a larger token in the run folder's claim.json), resumes it from A's last checkpoint
and finishes it. A then wakes up. Three moments for A to wake, as in the reliability
drill: in the middle of an epoch, between an epoch's training and its checkpoint, and
while B is still training. Each must end with one FINISHED run, every epoch logged
once, no stop reason, and the checkpoint at the last epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from senet.engine.hooks import CheckpointHook, EpochLine, Hook, RecordHook
from senet.engine.train import default_hooks, train_copies
from senet.errors import Fenced, TrainingStopped
from senet.settings.config import TrainConfig
from senet.worker.claim import Claim

EPOCHS = 4
STALE_AT = 2  # A loses its claim during epoch STALE_AT + 1


def _cfg(tmp_path: Path) -> TrainConfig:
    return TrainConfig(model="resnet20", dataset="builtin", preset="fast", epochs=EPOCHS,
                       batch_size=50, subset=100, device="cpu", seed=0,
                       out=str(tmp_path / "run"), tracking_uri=f"sqlite:///{tmp_path}/m.db",
                       experiment="fence", resume=True, workers=0,
                       tags={"senet.grid": "g", "senet.point": "p", "senet.seed": "0"})


def _worker_b(tmp_path: Path) -> None:
    """B: a newer claim, resumed from A's checkpoint, trained to the end."""
    claim = Claim.take(tmp_path / "run", trial_id=2)
    (outcome,) = train_copies([_cfg(tmp_path)], owns=[claim.held])
    assert isinstance(outcome, dict) and outcome["epochs_done"] == EPOCHS, outcome


class _At(Hook):
    """Runs ``action`` at the end of epoch ``when``, before the hooks after it."""

    def __init__(self, when: int, action) -> None:
        self.when, self.action = when, action

    def epoch(self, c, run, epoch, metrics, pack_size) -> None:
        if epoch == self.when:
            self.action()


def _check_one_clean_run(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    exp = client.get_experiment_by_name("fence")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert "senet.stop_reason" not in run.data.tags
    assert "senet.fail_reason" not in run.data.tags
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_top1_err")]
    assert sorted(steps) == list(range(1, EPOCHS + 1)), steps
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == EPOCHS
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "FINISHED" and summary["epochs_done"] == EPOCHS


def _worker_a(tmp_path: Path, extra: list[Hook], stop_after_b=None) -> object:
    claim = Claim.take(tmp_path / "run", trial_id=1)
    try:
        (outcome,) = train_copies([_cfg(tmp_path)], owns=[claim.held], hooks=extra,
                                  should_stop=stop_after_b)
    except TrainingStopped as exc:  # asked to stop as a whole (its heartbeat lost)
        return exc
    return outcome


@pytest.mark.slow
def test_a_worker_stopped_mid_epoch_leaves_the_new_owner_s_run_alone(tmp_path):
    b_done = []

    def b_takes_over() -> None:
        _worker_b(tmp_path)
        b_done.append(True)

    # A: checkpoint and record epochs 1-2; at the end of epoch 2, B claims and finishes;
    # A then trains epoch 3 and is asked to stop mid-epoch (its heartbeat lost).
    hooks = [CheckpointHook(), RecordHook(), EpochLine(), _At(STALE_AT, b_takes_over)]
    outcome = _worker_a(tmp_path, hooks, stop_after_b=lambda: bool(b_done))
    assert isinstance(outcome, TrainingStopped), outcome
    _check_one_clean_run(tmp_path)


@pytest.mark.slow
def test_a_worker_stopped_before_its_checkpoint_writes_nothing(tmp_path):
    # B takes over after A trained epoch 3 but before A checkpoints and logs it.
    hooks = [_At(STALE_AT + 1, lambda: _worker_b(tmp_path)), CheckpointHook(), RecordHook(),
             EpochLine()]
    outcome = _worker_a(tmp_path, hooks)
    assert isinstance(outcome, Fenced), outcome
    _check_one_clean_run(tmp_path)


@pytest.mark.slow
def test_a_worker_that_goes_on_while_the_new_owner_trains_is_fenced(tmp_path):
    # B's claim lands after A's epoch 2 (B has not trained yet); A goes on with epoch 3
    # and must stop at its first write; then B trains the rest.
    hooks = [CheckpointHook(), RecordHook(), EpochLine(),
             _At(STALE_AT, lambda: Claim.take(tmp_path / "run", trial_id=2))]
    outcome = _worker_a(tmp_path, hooks)
    assert isinstance(outcome, Fenced), outcome
    _worker_b(tmp_path)
    _check_one_clean_run(tmp_path)


def test_a_claim_older_than_the_folder_s_is_stale_from_the_start(tmp_path):
    newer = Claim.take(tmp_path, trial_id=7)
    older = Claim.take(tmp_path, trial_id=3)
    assert newer.held() and not older.held()
    assert json.loads((tmp_path / "claim.json").read_text())["trial_id"] == 7


def test_default_hooks_are_checkpoint_record_line():
    assert [type(h).__name__ for h in default_hooks(type("R", (), {"is_main": True})())] == [
        "CheckpointHook", "RecordHook", "EpochLine"]
