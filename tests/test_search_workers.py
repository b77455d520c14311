"""Searches through the real queue and workers: `senet search` seeds the queue, workers
ask the sampler for trials, train each (trial, seed) once, prune and report back.

The trainings are stand-ins (a few logged epochs inside a real MLflow run, errors made
up from the settings) so the test measures the queue, not the CPU; the workers are real
worker loops, three of them in separate processes, on a real SQLite storage."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import warm_procs
from mlflow import MlflowClient
from optuna.trial import TrialState

from senet.cli import main
from senet.queue import search as s
from senet.queue.storage import open_storage
from senet.queue.tickets import GridQueue
from senet.worker.loop import WorkerConfig, run_worker

LOG_ENV = "SENET_TEST_TRAINING_LOG"
HANG_ENV = "SENET_TEST_HANG"

TINY = """
model = "se_resnet20"
preset = "fast"
dataset = "builtin"
epochs = 2
subset = 200
seeds = [0, 1]
trials = {trials}
population_size = 4
prune_after_epochs = 1
prune_startup_trials = {startup}
[space]
reduction_stage1 = [4, 16, "none"]
reduction_stage2 = [4, 16, "none"]
reduction_stage3 = [4, 16, "none"]
"""


def _made_up_error(settings: dict, seed: int, epoch: int) -> float:
    """Every stage without SE costs 5 points; epoch 1 is 10 points worse than epoch 2."""
    reduction = str(settings.get("reduction", "none,none,none"))
    if settings["model"] == "resnet20":
        reduction = "none,none,none"
    stages = reduction.split(",") if "," in reduction else [reduction] * 3
    # a canonical trial says "no SE in stage 1" as stages = "2,3" with one shared ratio
    with_se = str(settings.get("stages", "1,2,3")).split(",")
    nones = sum(v == "none" or str(i) not in with_se for i, v in enumerate(stages, 1))
    return 20.0 + 5 * nones + 0.5 * seed + (10.0 if epoch == 1 else 0.0)


def fake_train(cfg, *, should_stop=None, log=None, on_epoch=None) -> dict:
    """Two epochs in a real MLflow run (closed as run_training closes it), logged to the
    file named by $SENET_TEST_TRAINING_LOG: one line per training started."""
    from senet.errors import TrainingStopped
    from senet.tracking.recorder import Recorder

    with open(os.environ[LOG_ENV], "a") as fh:
        fh.write(json.dumps({"trial": cfg.tags.get(s.T_TRIAL), "seed": cfg.seed,
                             "pid": os.getpid()}) + "\n")
    if os.environ.get(HANG_ENV):
        time.sleep(600)  # a worker that will be SIGKILLed while "training"
    settings = {"model": cfg.model, **cfg.model_options}
    recorder = Recorder(cfg.tracking_uri, cfg.experiment)
    run_id = recorder.start(run_id=None, tags=cfg.tags, parent_run_id=cfg.parent_run_id,
                            run_name=cfg.run_name)
    try:
        for epoch in (1, 2):
            time.sleep(0.05)
            error = _made_up_error(settings, cfg.seed, epoch)
            recorder.log_metrics({"val_top1_err": error}, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, {"val_top1_err": error})
    except TrainingStopped as exc:  # a pruned trial's run ends KILLED, as the engine's does
        recorder.close_quietly("KILLED", getattr(exc, "run_tags", {}))
        raise
    recorder.finish("FINISHED")
    return {"final_val_top1_err": error, "mlflow_run_id": run_id}


def _work(storage: str, runs: str, log_path: str, hang: bool = False) -> None:
    os.environ[LOG_ENV] = log_path
    if hang:
        os.environ[HANG_ENV] = "1"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The claim records the grace, and reapers honour it: a doomed worker's short grace
    # lets the survivor take its ticket back seconds after the kill.
    grace = 2.0 if hang else 60.0
    run_worker(WorkerConfig(storage=storage, runs_dir=runs, heartbeat_s=0.5, grace_s=grace),
               train_fn=fake_train)


def _start(tmp_path: Path, tracking_uri: str, trials: int, startup: int) -> tuple[str, Path]:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(trials=trials, startup=startup))
    storage = f"sqlite:///{tmp_path}/q.db"
    assert main(["search", str(path), "--storage", storage, "--tracking-uri", tracking_uri]) == 0
    return storage, path


def _trainings(log: Path) -> list[tuple[int, int]]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [(int(x["trial"]), int(x["seed"])) for x in lines]


def _state(storage: str, path: Path) -> tuple[optuna.Study, GridQueue, s.Search]:
    search = s.load_search(path)
    store = open_storage(storage)
    study = optuna.load_study(study_name=search.study_name, storage=store)
    return study, GridQueue.open(store, s.queue_name(search)), search


def _runs(tracking_uri: str, queue: GridQueue) -> list:
    client = MlflowClient(tracking_uri)
    exp = queue.attrs()["senet.mlflow_experiment_id"]
    return [r for r in client.search_runs([exp]) if r.data.tags.get("senet.role") != "grid"]


@pytest.mark.slow
def test_three_workers_train_each_trial_seed_once(tmp_path, tracking_uri):
    budget = 9
    storage, path = _start(tmp_path, tracking_uri, budget, startup=100)  # no pruning
    log = tmp_path / "trainings.jsonl"
    ctx = warm_procs.context()  # forked from a warm interpreter (tests/warm_procs.py)
    procs = [ctx.Process(target=_work, args=(storage, str(tmp_path / "runs"), str(log)))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    study, queue, search = _state(storage, path)
    trainings = _trainings(log)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    # trainings started == trials completed x seeds, and no (trial, seed) twice
    assert len(complete) == budget
    assert len(trainings) == budget * len(search.seeds) == 18
    assert Counter(trainings).most_common(1)[0][1] == 1
    assert sorted(trainings) == sorted((t.number, seed) for t in complete for seed in (0, 1))
    assert len({json.loads(x)["pid"] for x in log.read_text().splitlines()}) > 1
    # each trial's value is the mean of its seeds, the paper's settings are trials 0..2
    for t in complete:
        errors = t.user_attrs["senet.seed_errors"]
        assert len(errors) == 2 and t.values[0] == sum(errors) / 2
    assert {t.user_attrs["senet.reduction"] for t in complete[:3]} == {
        "4,4,4", "16,16,16", "none,none,none"}
    counts = queue.counts()
    assert (counts.done, counts.left, counts.failed) == (18, 0, 0)
    # one MLflow run per training, tagged with the search and the trial
    runs = _runs(tracking_uri, queue)
    assert len(runs) == 18
    assert {r.data.tags["senet.search"] for r in runs} == {search.name}
    assert sorted((int(r.data.tags["senet.trial"]), int(r.data.tags["senet.seed"]))
                  for r in runs) == sorted(trainings)
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_pruned_trials_are_closed_in_optuna_mlflow_and_the_queue(tmp_path, tracking_uri,
                                                                 capsys):
    budget = 8
    storage, path = _start(tmp_path, tracking_uri, budget, startup=3)
    log = tmp_path / "trainings.jsonl"
    os.environ[LOG_ENV] = str(log)
    try:
        run_worker(WorkerConfig(storage=storage, runs_dir=str(tmp_path / "runs"),
                                heartbeat_s=1.0), train_fn=fake_train)
    finally:
        del os.environ[LOG_ENV]
    study, queue, search = _state(storage, path)
    trials = study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(pruned) + len(complete) == budget
    # the plain network is the worst setting but, as a paper setting, never pruned
    assert "none,none,none" in {t.user_attrs["senet.reduction"] for t in complete}
    # A stage without SE makes a trial worse than the median at epoch 1: pruned there.
    # Which trials the sampler draws varies (each worker reseeds it), so the check is that
    # exactly the sampled trials with such a stage were pruned.
    sampled = [t for t in trials if "senet.seeded" not in t.user_attrs]
    with_plain_stage = {t.number for t in sampled if "none" in t.user_attrs["senet.reduction"]}
    assert {t.number for t in pruned} == with_plain_stage
    assert {t.user_attrs["senet.last_epoch"] for t in pruned} <= {1}
    # seed 0 was pruned, so seed 1 of the trial never trained; nothing trained twice
    trainings = _trainings(log)
    assert len(trainings) == 2 * len(complete) + len(pruned)
    assert {(t.number, 0) for t in pruned} <= set(trainings)
    assert not {(t.number, 1) for t in pruned} & set(trainings)
    closed = [t for t in queue.tickets() if t.state == TrialState.PRUNED]
    assert len(closed) == 2 * len(pruned)
    assert all("pruned" in t.reason for t in closed)
    runs = {int(r.data.tags["senet.trial"]): r for r in _runs(tracking_uri, queue)
            if "senet.pruned" in r.data.tags}
    assert sorted(runs) == sorted(t.number for t in pruned)
    assert {(r.info.status, r.data.tags["senet.pruned"]) for r in runs.values()} <= {
        ("KILLED", "1")}
    # the progress lines and `senet status` call them pruned, not failed: nothing to retry
    printed = capsys.readouterr().out
    assert f"0 failed, {2 * len(pruned)} pruned)" in printed if pruned else "0 failed)" in printed
    assert main(["status", "--storage", storage, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[queue.name]
    assert (report["failed"], report["pruned"], report["failures"]) == (0, 2 * len(pruned), [])


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_taken_over_and_told_once(tmp_path, tracking_uri):
    budget = 3
    storage, path = _start(tmp_path, tracking_uri, budget, startup=100)
    log = tmp_path / "trainings.jsonl"
    runs = str(tmp_path / "runs")
    ctx = warm_procs.context()  # forked from a warm interpreter (tests/warm_procs.py)
    doomed = ctx.Process(target=_work, args=(storage, runs, str(log), True))
    doomed.start()
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(doomed.pid, signal.SIGKILL)  # mid-"training", ticket RUNNING, trial RUNNING
    doomed.join()
    [killed] = _trainings(log)
    time.sleep(2.5)  # past the doomed worker's grace
    os.environ[LOG_ENV] = str(log)
    try:  # a grace of 1 s: the dead worker's ticket is taken back at once
        run_worker(WorkerConfig(storage=storage, runs_dir=runs, heartbeat_s=0.5, grace_s=1.0),
                   train_fn=fake_train)
    finally:
        del os.environ[LOG_ENV]
    study, queue, search = _state(storage, path)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * budget
    assert all(len(t.user_attrs["senet.seed_errors"]) == 2 for t in study.get_trials())
    trainings = _trainings(log)
    # every (trial, seed) trained once to the end; the killed one was started twice
    assert len(trainings) == budget * 2 + 1
    assert Counter(trainings)[killed] == 2 and len(set(trainings)) == budget * 2
    # the replacement ticket trained the same trial, in the same MLflow run, tagged
    replaced = [t for t in queue.tickets() if "senet.replaces" in t.attrs]
    assert [(s.trial_of(t), t.seed) for t in replaced] == [killed]
    runs_ = _runs(tracking_uri, queue)
    assert len(runs_) == budget * 2 and {r.info.status for r in runs_} == {"FINISHED"}
    assert all(r.data.tags["senet.trial"] == str(int(r.data.tags["senet.point"][5:]))
               for r in runs_)


@pytest.mark.slow
def test_a_packed_search_prunes_and_reports_with_real_trainings(tmp_path, tracking_uri,
                                                                capsys):
    """`senet work --pack 2` trains each trial's two seeds as one packed model through the
    one engine: every sampled trial ends COMPLETE or PRUNED in Optuna, pruned runs carry
    senet.pruned, and every run is tagged with the search."""
    path = tmp_path / "packed.toml"
    path.write_text(TINY.format(trials=6, startup=2).replace(
        'subset = 200', 'subset = 100\nbatch_size = 25\nlr = 0.05\nworkers = 0'))
    storage = f"sqlite:///{tmp_path}/q.db"
    assert main(["search", str(path), "--storage", storage, "--tracking-uri", tracking_uri]) == 0
    assert main(["work", "--storage", storage, "--devices", "cpu", "--pack", "2",
                 "--runs-dir", str(tmp_path / "runs")]) == 0
    study, queue, search = _state(storage, path)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 6 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, states
    printed = capsys.readouterr().out
    assert "packed (tickets" in printed  # the seeds really trained as one packed model
    runs = _runs(tracking_uri, queue)
    assert {r.data.tags["senet.search"] for r in runs} == {search.name}
    assert {r.data.tags["senet.pack_size"] for r in runs} == {"2"}
    pruned = {t.number for t in study.get_trials() if t.state == TrialState.PRUNED}
    tagged = {int(r.data.tags["senet.trial"]) for r in runs if "senet.pruned" in r.data.tags}
    assert tagged == pruned
    assert all(r.info.status == "KILLED" for r in runs if "senet.pruned" in r.data.tags)
    for t in study.get_trials():
        if t.state == TrialState.COMPLETE:
            assert len(t.user_attrs["senet.seed_errors"]) == 2
    print(f"packed search: {len(pruned)} of 6 trials pruned")
