"""Queue benchmarks.

overhead (default): what the queue and MLflow tracking cost per grid point, training
    excluded. A grid of trivial points is worked end to end by one worker whose
    "training" only does the tracking a real run does (start or continue the run under
    the grid's parent, log params, one epoch of metrics, finish). Prints the median.

        python benchmarks/bench_queue.py overhead --points 20 [--storage URL]

drill: real trainings on the built-in data with several `senet work` processes, one
    of them SIGKILLed after its point has checkpointed. Prints trainings started and
    finished, and checks MLflow for exactly one FINISHED run per point, no orphans.

        python benchmarks/bench_queue.py drill --points 16 --workers 4 --kill 1 [--storage URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _grid_file(folder: Path, name: str, points: int, training: str) -> Path:
    # Varying lr gives distinct points that train equally fast.
    lrs = [round(0.01 * (i + 1), 4) for i in range(points)]
    path = folder / f"{name}.toml"
    path.write_text(f"""
dataset = "builtin"
preset = "fast"
model = "resnet20"
workers = 0
{training}
seeds = [0]
[axes]
lr = {lrs}
""")
    return path


def _fresh_tracking(folder: Path) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # schema migrations happen here, not in the timing
    return uri


def _queue(grid: Path, storage: str, tracking: str) -> None:
    from senet.cli import main

    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        code = main(["queue", str(grid), "--storage", storage, "--tracking-uri", tracking])
    if code != 0:
        raise SystemExit("queueing failed")


# ---------------------------------------------------------------------------
# overhead


def tracking_only_train(cfg, *, heartbeat=None, should_stop=None, log=None):
    """The tracking a real run does, without the training."""
    from senet.tracking.recorder import Recorder

    started = time.perf_counter()
    tracker = Recorder(cfg.tracking_uri, cfg.experiment)
    tracker.start(run_id=None, tags=dict(cfg.tags), parent_run_id=cfg.parent_run_id,
                  run_name=cfg.run_name)
    tracker.set_tags(dict(cfg.tags))
    tracker.log_params({"model": cfg.model, "lr": cfg.lr, "seed": cfg.seed, "epochs": 1})
    tracker.log_metrics({"train_loss": 1.0, "val_top1_err": 50.0, "lr": cfg.lr}, step=1)
    tracker.log_metrics({"final_val_top1_err": 50.0})
    tracker.finish("FINISHED")
    tracking_only_train.seconds.append(time.perf_counter() - started)
    return {"final_val_top1_err": 50.0, "mlflow_run_id": tracker.run_id, "status": "FINISHED"}


tracking_only_train.seconds = []


def overhead(args: argparse.Namespace) -> None:
    import optuna

    from senet import urls
    from senet.queue import storage as st_mod
    from senet.worker.loop import Worker, WorkerConfig

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name = f"bench{os.getpid()}"
        grid = _grid_file(folder, name, args.points, "epochs = 1")
        storage = args.storage or str(folder / "q.journal")
        tracking = _fresh_tracking(folder)
        t0 = time.perf_counter()
        _queue(grid, storage, tracking)
        queue_s = time.perf_counter() - t0

        cfg = WorkerConfig(grids=[name], storage=storage, runs_dir=str(folder / "runs"),
                           heartbeat_s=5, grace_s=60)
        worker = Worker(cfg, train_fn=tracking_only_train)
        ends: list[float] = []
        original = worker._train

        def timed_train(queue, ticket):
            original(queue, ticket)
            ends.append(time.perf_counter())

        worker._train = timed_train
        start = time.perf_counter()
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            worker.run()
        per_point = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)]
        if args.storage:
            st = st_mod.open_storage(args.storage)
            st.delete_study(st.get_study_id_from_name(name))
    tracking_s = tracking_only_train.seconds
    queue_part = [p - t for p, t in zip(per_point, tracking_s, strict=True)]
    print(f"storage {urls.redact(storage) if args.storage else 'journal file'}, "
          f"{args.points} points, one worker")
    print(f"  queue command (validate + MLflow experiment/parent + enqueue): {queue_s:.2f} s")
    print(f"  per point end to end, median {statistics.median(per_point):.3f} s "
          f"(min {min(per_point):.3f}, max {max(per_point):.3f})")
    print(f"    of which MLflow tracking, median {statistics.median(tracking_s):.3f} s")
    print(f"    of which queue (reap, claim, settle, heartbeat, report, progress), "
          f"median {statistics.median(queue_part):.3f} s")
    print(f"median per-point overhead: {statistics.median(per_point):.3f} s (target <= 2 s)")


# ---------------------------------------------------------------------------
# drill


def drill(args: argparse.Namespace) -> None:
    from mlflow import MlflowClient

    from senet import urls
    from senet.queue import storage as st_mod
    from senet.queue import tickets as q
    from senet.tracking import store as tr

    folder = Path(tempfile.mkdtemp(prefix="senet-drill-"))
    name = f"drill{os.getpid()}"
    grid = _grid_file(folder, name, args.points, "epochs = 2\nsubset = 100\nbatch_size = 50")
    storage = args.storage or str(folder / "q.journal")
    tracking = _fresh_tracking(folder)
    _queue(grid, storage, tracking)
    runs = folder / "runs"
    env = {**os.environ, "SENET_SYSTEM_METRICS": "0", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "senet", "work", name, "--storage", storage,
           "--runs-dir", str(runs), "--devices", "cpu", "--heartbeat", "1", "--grace", "8"]
    # Each worker gets its share of the cores, as `--devices cpu,cpu,...` would give it.
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.workers))
    t0 = time.monotonic()
    logs = [open(folder / f"worker{i}.log", "w") for i in range(args.workers)]
    procs = [subprocess.Popen(cmd, cwd=folder, env=env, stdout=fh, stderr=subprocess.STDOUT)
             for fh in logs]
    killed = []
    while len(killed) < args.kill and any(p.poll() is None for p in procs):
        for ckpt in runs.glob(f"{name}/*/seed0/checkpoint.pt"):
            last = json.loads((ckpt.parent / "attempts.jsonl").read_text().splitlines()[-1])
            pid = int(last["worker"].rsplit(":", 1)[1])
            alive = [p for p in procs if p.pid == pid and p.poll() is None]
            if last["event"] == "start" and alive and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                print(f"SIGKILLed worker {pid} during {ckpt.parent.parent.name} "
                      f"at {time.monotonic() - t0:.0f} s")
                break
        time.sleep(0.05)
    for p in procs:
        p.wait()
    wall = time.monotonic() - t0

    started = finished = 0
    resumed = []
    for log in runs.glob(f"{name}/*/seed*/attempts.jsonl"):
        events = [json.loads(x) for x in log.read_text().splitlines()]
        starts = [e for e in events if e["event"] == "start"]
        started += len(starts)
        finished += sum(e["event"] == "end" and e.get("outcome") == "done" for e in events)
        resumed += [e for e in starts[1:] if e["checkpoint"]]
    queue = q.GridQueue.open(st_mod.open_storage(storage), name)
    counts = queue.counts()
    client = MlflowClient(tracking)
    exp = queue.attrs()[tr.A_EXPERIMENT_ID]
    children = [r for r in client.search_runs([exp], max_results=1000)
                if "senet.point" in r.data.tags]
    per_slot: dict[tuple[str, str], list[str]] = {}
    for r in children:
        key = (r.data.tags["senet.point"], r.data.tags["senet.seed"])
        per_slot.setdefault(key, []).append(r.info.status)
    one_finished = sum(v == ["FINISHED"] for v in per_slot.values())
    running = sum(s == "RUNNING" for v in per_slot.values() for s in v)
    parent = client.get_run(queue.attrs()[tr.A_PARENT_RUN]).info.status
    print(f"storage {urls.redact(storage) if args.storage else 'journal file'}: {args.points} "
          f"points, {args.workers} workers, {len(killed)} SIGKILLed, wall {wall:.0f} s")
    print(f"  trainings started {started}, finished {finished}; "
          f"resumed from a checkpoint: {len(resumed)}")
    print(f"  queue: done {counts.done}, failed {counts.failed}, running {counts.running}, "
          f"queued {counts.queued}")
    print(f"  MLflow: {len(children)} runs for {len(per_slot)} points, {one_finished} points "
          f"with exactly one FINISHED run, {running} RUNNING; parent run {parent}")
    print(f"  logs and runs kept in {folder}")
    if args.storage:
        st = st_mod.open_storage(args.storage)
        st.delete_study(st.get_study_id_from_name(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["overhead", "drill"], default="overhead")
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill", type=int, default=1, help="workers to SIGKILL (drill)")
    parser.add_argument("--storage", help="queue storage URL (default: a temporary journal)")
    args = parser.parse_args()
    overhead(args) if args.mode == "overhead" else drill(args)


if __name__ == "__main__":
    main()
