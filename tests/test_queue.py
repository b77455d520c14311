"""The grid queue: idempotent queuing, atomic claims, lost workers, failures, retries.

Most tests drive real worker processes with a stand-in trainer (`fake_train`) that
keeps a checkpoint and counts its own starts and finishes in the run folder, so that
"exactly N trainings" is measured by what trained, not by the queue's own bookkeeping.
One end-to-end test runs `senet work` processes with the real trainer.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import warm_procs

from senet.cli import main as cli
from senet.errors import SenetError, TrainingFailed
from senet.queue.storage import open_storage
from senet.tracking import store as tr

HEARTBEAT_S = 0.3
GRACE_S = 2.0
FAKE_EPOCHS = 3
FAKE_EPOCH_S = 0.2
DRAIN_POINTS = 8  # good points in the drain tests: two or three per surviving worker
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# A stand-in trainer with the run_training contract (checkpoint, resume, stop, fail)


def fake_train(cfg, *, heartbeat=None, should_stop=None, log=None, hold=None):
    """hold: a reduction whose first training stops after its first checkpoint and waits
    there (beating) to be killed, so a test can kill a worker mid-point without a race."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "fake-checkpoint.json"
    epoch = json.loads(ckpt.read_text())["epoch"] if ckpt.exists() else 0
    with open(out / "trainings.log", "a") as fh:
        fh.write(json.dumps({"event": "start", "from_epoch": epoch, "pid": os.getpid(),
                             "reduction": cfg.model_options.get("reduction")}) + "\n")
    if cfg.lr is not None and cfg.lr >= 100:
        raise TrainingFailed(f"non-finite loss at epoch {epoch + 1} step 1 (lr {cfg.lr:g})")
    for e in range(epoch + 1, FAKE_EPOCHS + 1):
        end = time.monotonic() + FAKE_EPOCH_S
        while time.monotonic() < end:
            time.sleep(0.02)
            if heartbeat:
                heartbeat()
            if should_stop and should_stop():
                raise SenetError("stopped on request")
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch": e}))
        os.replace(tmp, ckpt)
        if epoch == 0 and hold is not None and cfg.model_options.get("reduction") == hold:
            while not (should_stop and should_stop()):
                time.sleep(0.02)
            raise SenetError("stopped on request")
    with open(out / "trainings.log", "a") as fh:
        fh.write(json.dumps({"event": "finish", "pid": os.getpid()}) + "\n")
    value = float(cfg.model_options.get("reduction", 0)) + cfg.seed / 10
    return {"final_val_top1_err": value, "mlflow_run_id": None, "status": "FINISHED"}


def _worker_main(storage: str, grid: str, runs_dir: str, hold: int | None) -> None:
    from senet.worker.loop import WorkerConfig, run_worker

    cfg = WorkerConfig(grids=[grid], storage=storage, runs_dir=runs_dir, device="cpu",
                       heartbeat_s=HEARTBEAT_S, grace_s=GRACE_S)
    run_worker(cfg, train_fn=functools.partial(fake_train, hold=hold))


def start_workers(n: int, storage: str, grid: str, runs_dir: Path,
                  hold: int | None = None) -> list:
    """n worker processes (forked from the warm server: see warm_procs)."""
    ctx = warm_procs.context()
    procs = [ctx.Process(target=_worker_main, args=(storage, grid, str(runs_dir), hold))
             for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def join_all(procs: list, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    alive = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not alive, f"workers still running after {timeout}s: {alive}"


# ---------------------------------------------------------------------------
# Helpers


def write_grid(folder: Path, name: str, reductions: int, *, failing: bool = False,
               seeds: int = 1, extra: str = "") -> Path:
    """A grid of `reductions` SE-ResNet-20 points (+ one that fails, if asked)."""
    text = f"""
name = "{name}"
title = "test grid"
dataset = "builtin"
preset = "fast"
model = "se_resnet20"
seeds = {list(range(seeds))}
{extra}
[axes]
reduction = {list(range(1, reductions + 1))}
"""
    if failing:
        text += '\n[[variants]]\nlabel = "diverges"\nlr = 1000.0\n'
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def queue_cmd(*args: str) -> int:
    return cli(["queue", *args])


def read_events(runs_dir: Path, grid: str, name: str = "trainings.log") -> dict:
    """(point, seed) -> list of events written by that slot's trainings. Run folders are
    named by training key; the worker's attempts.jsonl says which grid slot each holds."""
    events = {}
    for log in runs_dir.glob(f"*/{name}"):
        first = json.loads((log.parent / "attempts.jsonl").read_text().splitlines()[0])
        if first["grid"] != grid:
            continue
        events[(first["point"], first["seed"])] = [
            json.loads(line) for line in log.read_text().splitlines()]
    return events


def open_queue(storage: str, grid: str):
    from senet.queue import tickets as q

    return q.GridQueue.open(open_storage(storage), grid)


def states(queue) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in queue.tickets():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# ---------------------------------------------------------------------------
# Queuing


def test_queue_is_idempotent_and_records_tracking(tmp_path, tracking_uri, capsys):
    from mlflow import MlflowClient


    grid = write_grid(tmp_path, "idem", 3, seeds=2)
    storage = str(tmp_path / "q.journal")
    assert queue_cmd(str(grid), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    assert "queued 6 new" in capsys.readouterr().out
    assert queue_cmd(str(grid), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    assert "queued 0 new; 6 already" in capsys.readouterr().out
    # --seeds widens the grid: only the new seed's points are added
    assert queue_cmd(str(grid), "--storage", storage, "--tracking-uri", tracking_uri,
                     "--seeds", "3") == 0
    assert "queued 3 new; 6 already" in capsys.readouterr().out

    queue = open_queue(storage, "idem")
    assert states(queue) == {"WAITING": 9}
    slots = queue.slots()
    assert len(slots) == 9 and all(len(v) == 1 for v in slots.values())
    attrs = queue.attrs()
    client = MlflowClient(tracking_uri)
    parent = client.get_run(attrs[tr.A_PARENT_RUN])
    assert parent.info.experiment_id == attrs[tr.A_EXPERIMENT_ID]
    assert client.get_experiment(parent.info.experiment_id).name == "idem"
    # Queuing again never made a second parent run.
    runs = client.search_runs([attrs[tr.A_EXPERIMENT_ID]])
    assert [r.info.run_id for r in runs] == [parent.info.run_id]


def _claim_all(path: str, barrier, results) -> None:
    """One process with its own storage object: wait for the others, then try every ticket."""
    from senet.queue import tickets as q

    queue = q.GridQueue.open(open_storage(path), "race")
    waiting = queue.waiting()
    barrier.wait(timeout=120)
    results.put([t.trial_id for t in waiting if queue.try_claim(t)])


def test_claim_is_exclusive_across_storages(tmp_path):
    """Three processes, each with its own storage object, claim the same 20 tickets at once:
    every ticket is claimed by exactly one of them."""
    from senet.queue import tickets as q

    path = str(tmp_path / "race.journal")
    a, _ = q.GridQueue.open_or_create(open_storage(path), "race")
    for i in range(20):
        a.enqueue(f"p{i}", 0, f"p{i}", {})
    ctx = warm_procs.context()
    barrier, results = ctx.Barrier(3), ctx.SimpleQueue()
    procs = [ctx.Process(target=_claim_all, args=(path, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    join_all(procs, timeout=180)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    won = [results.get() for _ in procs]
    claimed = [trial for wins in won for trial in wins]
    assert sorted(claimed) == sorted(t.trial_id for t in a.tickets())  # each exactly once
    assert states(a) == {"RUNNING": 20}


def test_duplicate_tickets_train_once(tmp_path):
    """Two tickets for one slot (e.g. two `senet queue` at once): the first claim wins."""
    from senet.queue import tickets as q

    path = str(tmp_path / "dup.journal")
    a, _ = q.GridQueue.open_or_create(open_storage(path), "dup")
    first = a.enqueue("p", 0, "p", {})
    a.enqueue("p", 0, "p", {})
    b = q.GridQueue.open(open_storage(path), "dup")
    t_b = b.waiting()[1]  # b takes the second ticket...
    assert b.try_claim(t_b)
    assert b.settle(t_b, GRACE_S) is None  # ...and, sweeping, closes the first
    t_a = a.ticket(first)
    assert not a.try_claim(t_a)
    assert states(a) == {"PRUNED": 1, "RUNNING": 1}
    b.complete(t_b.trial_id, 1.0, {})
    # a late third ticket for a finished slot is closed without training
    third = a.enqueue("p", 0, "p", {})
    t3 = a.ticket(third)
    assert a.try_claim(t3)
    assert "already done" in a.settle(t3, GRACE_S)


def test_reaper_requeues_once(tmp_path):
    from senet.queue import tickets as q

    path = str(tmp_path / "reap.journal")
    a, _ = q.GridQueue.open_or_create(open_storage(path), "reap")
    a.enqueue("p", 0, "p", {"model": "x"})
    t = a.waiting()[0]
    assert a.try_claim(t)
    b = q.GridQueue.open(open_storage(path), "reap")
    assert b.reap(grace=60) == []  # fresh heartbeat: left alone
    later = time.time() + 120
    reaped_b = b.reap(grace=60, now=later)
    reaped_a = a.reap(grace=60, now=later)
    assert [r.trial_id for r in reaped_b] == [t.trial_id] and reaped_a == []
    tickets = sorted(a.tickets(), key=lambda x: x.number)
    assert [x.state.name for x in tickets] == ["FAIL", "WAITING"]
    assert tickets[0].reason.startswith("worker lost")
    assert tickets[1].settings == {"model": "x"} and tickets[1].slot == ("p", 0)
    with pytest.raises(Exception, match="finished"):
        a.beat(t.trial_id)  # the lost worker learns it lost the ticket


# ---------------------------------------------------------------------------
# Multi-process drains with a stand-in trainer


def _drain_with_a_kill(storage: str, grid_path: Path, grid: str, runs_dir: Path,
                       tracking_uri: str) -> None:
    """4 workers drain DRAIN_POINTS good points + 1 diverging one; the worker training reduction=1
    is SIGKILLed after that point has checkpointed. Checks exact training counts and the
    resume."""
    from mlflow import MlflowClient

    assert queue_cmd(str(grid_path), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    procs = start_workers(4, storage, grid, runs_dir, hold=1)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for folder in runs_dir.glob("*"):
            log = folder / "trainings.log"
            if (folder / "fake-checkpoint.json").exists() and log.exists():
                events = [json.loads(x) for x in log.read_text().splitlines()]
                if events[0]["reduction"] == 1:
                    attempt = json.loads((folder / "attempts.jsonl").read_text().splitlines()[0])
                    victim = (attempt["point"], events[0]["pid"])
                    break
        time.sleep(0.02)
    assert victim is not None, "the held training did not reach its first checkpoint"
    os.kill(victim[1], signal.SIGKILL)
    join_all(procs, timeout=90)

    events = read_events(runs_dir, grid)
    starts = sum(e["event"] == "start" for ev in events.values() for e in ev)
    finishes = sum(e["event"] == "finish" for ev in events.values() for e in ev)
    n = DRAIN_POINTS
    assert len(events) == n + 1
    assert starts == n + 2  # n good + 1 diverging + the killed point once more
    assert finishes == n
    killed = events[(victim[0], 0)]
    assert [e["event"] for e in killed] == ["start", "start", "finish"]
    assert killed[1]["from_epoch"] == 1  # resumed from its checkpoint, not from scratch
    assert killed[1]["pid"] != victim[1]
    for slot, ev in events.items():
        if slot != (victim[0], 0):
            assert sum(e["event"] == "start" for e in ev) == 1, slot
    # the workers did share the grid
    trainers = {e["pid"] for ev in events.values() for e in ev if e["event"] == "finish"}
    assert len(trainers) >= 2 and victim[1] not in trainers, trainers

    queue = open_queue(storage, grid)
    counts = queue.counts()
    assert (counts.done, counts.failed, counts.running, counts.queued) == (n, 1, 0, 0)
    tickets = queue.tickets()
    assert sum(t.state.name == "COMPLETE" for t in tickets) == n
    reasons = sorted(t.reason for t in tickets if t.state.name == "FAIL")
    assert len(reasons) == 2
    assert reasons[0].startswith("non-finite loss") and reasons[1].startswith("worker lost")
    attrs = queue.attrs()
    parent = MlflowClient(attrs[tr.A_TRACKING_URI]).get_run(attrs[tr.A_PARENT_RUN])
    assert parent.info.status == "FINISHED"  # no RUNNING parent left behind

    # --retry-failed queues the diverging point again, and only it
    assert queue_cmd(str(grid_path), "--storage", storage, "--retry-failed",
                     "--tracking-uri", tracking_uri) == 0
    counts = queue.counts()
    assert (counts.done, counts.failed, counts.queued) == (n, 0, 1)


def test_four_workers_drain_journal_with_a_kill(tmp_path, tracking_uri):
    grid = write_grid(tmp_path, "drain", DRAIN_POINTS, failing=True)
    _drain_with_a_kill(str(tmp_path / "q.journal"), grid, "drain", tmp_path / "runs",
                       tracking_uri)


@pytest.mark.postgres
def test_four_workers_drain_postgres_with_a_kill(tmp_path, tracking_uri, postgres_url,
                                                 unique_name):

    grid = write_grid(tmp_path, unique_name, DRAIN_POINTS, failing=True)
    try:
        _drain_with_a_kill(postgres_url, grid, unique_name, tmp_path / "runs", tracking_uri)
    finally:
        storage = open_storage(postgres_url)
        storage.delete_study(storage.get_study_id_from_name(unique_name))


def test_sqlite_storage_claims_are_exclusive(tmp_path, tracking_uri):
    """SQLite is accepted too; claims must stay exclusive under concurrent workers."""
    grid = write_grid(tmp_path, "lite", 6)
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    runs = tmp_path / "runs"
    assert queue_cmd(str(grid), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    join_all(start_workers(3, storage, "lite", runs), timeout=60)
    events = read_events(runs, "lite")
    assert len(events) == 6
    assert all([e["event"] for e in ev] == ["start", "finish"] for ev in events.values())


def test_status_json(tmp_path, tracking_uri, capsys):
    grid = write_grid(tmp_path, "stat", 2, failing=True)
    storage = str(tmp_path / "q.journal")
    assert queue_cmd(str(grid), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    capsys.readouterr()
    assert cli(["status", "--storage", storage, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: report["stat"][k] for k in ("done", "running", "failed", "queued")} == {
        "done": 0, "running": 0, "failed": 0, "queued": 3}
    join_all(start_workers(1, storage, "stat", tmp_path / "runs"), timeout=60)
    assert cli(["status", "stat", "--storage", storage, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["stat"]
    assert (report["done"], report["failed"], report["queued"]) == (2, 1, 0)
    assert report["failures"][0]["label"] == "diverges"
    assert "non-finite loss" in report["failures"][0]["reason"]
    assert cli(["status", "--storage", storage]) == 0
    text = capsys.readouterr().out
    assert "FAILED 'diverges' seed 0: non-finite loss" in text


# ---------------------------------------------------------------------------
# Unreachable backends fail fast with one line


def test_unreachable_storage_fails_fast(tmp_path):
    """`senet status` / `senet queue` processes: exit code 2 and one line on stderr."""
    grid = write_grid(tmp_path, "down", 1)
    t0 = time.monotonic()
    proc = warm_procs.Senet(["status", "--storage", "postgresql://senet:x@127.0.0.1:9/nowhere"],
                            tmp_path / "out", cwd=REPO)
    assert proc.wait(timeout=60) == 2
    assert time.monotonic() - t0 < 20
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("senet status: error: cannot open queue")
    assert "x@" not in lines[0]  # the password is not printed
    t0 = time.monotonic()
    proc = warm_procs.Senet(["queue", str(grid), "--storage", str(tmp_path / "q.journal"),
                             "--tracking-uri", "http://127.0.0.1:9"], tmp_path / "out", cwd=REPO)
    assert proc.wait(timeout=60) == 2 and time.monotonic() - t0 < 20
    assert proc.stderr.strip().startswith("senet queue: error: cannot reach MLflow tracking")
    assert not (tmp_path / "q.journal").exists()  # nothing queued


def test_work_on_unknown_grid_is_an_error(tmp_path, tracking_uri):
    from senet.worker.loop import WorkerConfig, run_worker

    storage = str(tmp_path / "q.journal")
    with pytest.raises(SenetError, match="the file does not exist"):
        run_worker(WorkerConfig(grids=["nope"], storage=storage))
    assert not Path(storage).exists()  # looking did not create an empty queue
    assert queue_cmd(str(write_grid(tmp_path, "some", 1)), "--storage", storage,
                     "--tracking-uri", tracking_uri) == 0
    with pytest.raises(SenetError, match="grid 'nope' is not queued"):
        run_worker(WorkerConfig(grids=["nope"], storage=storage))


# ---------------------------------------------------------------------------
# End to end with the real trainer and the real CLI


def write_image_tree(root: Path, train: int, val: int, classes: int = 2) -> Path:
    """A class-per-folder tree of random 16x16 PNGs: `train` and `val` images per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_real_training_end_to_end_with_a_kill(tmp_path, tracking_uri):
    """`senet work` processes with the real trainer on a small image folder: a SIGKILLed
    worker's point resumes from its checkpoint and ends as one FINISHED MLflow run."""
    from mlflow import MlflowClient

    # 100 training and 200 validation images of 16x16 (a quarter of the pixels of the
    # built-in 32x32 ones): an epoch takes a fraction of a second, still long enough to
    # kill a worker between its first checkpoint and its last epoch.
    tree = write_image_tree(tmp_path / "tree", train=50, val=100)
    grid = tmp_path / "real.toml"
    grid.write_text(f"""
name = "real"
dataset = "folder:{tree}"
preset = "fast"
model = "resnet20"
epochs = 3
batch_size = 50
workers = 0
seeds = [0]
[axes]
lr = [0.05, 0.1]
[[variants]]
label = "batch larger than the data"
batch_size = 500
""")
    storage = str(tmp_path / "q.journal")
    runs = tmp_path / "runs"
    assert queue_cmd(str(grid), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    cmd = ["work", "real", "--storage", storage, "--runs-dir", str(runs), "--devices", "cpu",
           "--heartbeat", "0.4", "--grace", "2"]
    procs = [warm_procs.Senet(cmd, tmp_path / "out", cwd=tmp_path, threads=1,
                              env={"SENET_SYSTEM_METRICS": "0", "OMP_NUM_THREADS": "1",
                                   "SENET_CACHE": str(tmp_path / "cache")})
             for _ in range(2)]
    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline:
        for ckpt in runs.glob("*/checkpoint.pt"):  # runs/<model>-<training key>/
            attempts = (ckpt.parent / "attempts.jsonl").read_text().splitlines()
            last = json.loads(attempts[-1])
            if last["event"] == "start":
                pid = int(last["worker"].rsplit(":", 1)[1])
                victim = (json.loads(attempts[0])["point"], pid)
        time.sleep(0.05)
    assert victim is not None, "no training checkpointed in time"
    os.kill(victim[1], signal.SIGKILL)
    for p in procs:
        p.wait(timeout=300)

    queue = open_queue(storage, "real")
    counts = queue.counts()
    assert (counts.done, counts.failed, counts.running, counts.queued) == (2, 1, 0, 0)
    attempts = read_events(runs, "real", "attempts.jsonl")
    resumed = [e for e in attempts[(victim[0], 0)] if e["event"] == "start"]
    assert len(resumed) == 2 and resumed[1]["checkpoint"] is True
    ends = [e for ev in attempts.values() for e in ev if e["event"] == "end"]
    assert sorted(e["outcome"] for e in ends) == ["done", "done", "failed"]

    client = MlflowClient(tracking_uri)
    exp = queue.attrs()[tr.A_EXPERIMENT_ID]
    children = [r for r in client.search_runs([exp]) if "senet.point" in r.data.tags]
    by_point: dict[str, list] = {}
    for r in children:
        by_point.setdefault(r.data.tags["senet.point"], []).append(r.info.status)
    # the failing point stopped before creating a run; the others have exactly one each
    assert sorted(by_point.values()) == [["FINISHED"], ["FINISHED"]]
    failed = next(t for t in queue.tickets() if t.state.name == "FAIL" and "batch" in t.label)
    assert "batch size 500 is larger than the training set" in failed.reason
    resumed_run = next(r for r in children if r.data.tags["senet.point"] == victim[0])
    history = client.get_metric_history(resumed_run.info.run_id, "val_top1_err")
    assert sorted(m.step for m in history) == [1, 2, 3]  # no epoch trained twice
    # flat, not nested under the grid's run: MLflow's table hides nested runs' names and metrics
    assert all("mlflow.parentRunId" not in r.data.tags for r in children)
