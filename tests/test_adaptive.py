"""Adaptive seeds: grid files, the seed-adding step, two workers on one queue, the
tables' lines and `senet plan --seeds`. Workers are real processes on a real journal
storage and MLflow store; only the trainer is a stand-in whose error is a fixed value
per point plus seed noise, so the outcome can be replayed without a queue."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import warm_procs
from mlflow import MlflowClient

from analysis.gridspec import from_grid
from analysis.paper import load_paper_numbers
from analysis.tables import build_table
from senet.cli import main as cli
from senet.errors import SenetError
from senet.queue import adaptive
from senet.queue import sequential as seq
from senet.queue.storage import open_storage
from senet.settings.grid import load_grid
from senet.tracking import store as tr

# True error of each point (by reduction): r = 8 is far worse, r = 4 equals r = 2.
TRUE_ERROR = {2: 10.0, 4: 10.0, 8: 14.0}
NOISE = 0.3
GRID = """
name = "adaptive"
dataset = "builtin"
preset = "fast"
model = "se_resnet20"
seeds = {{ min = 2, max = {max} }}
claims = [
    {{ claim = "r = 8 is worse than r = 2", row = "reduction=8", worse_than = "reduction=2" }},
    {{ claim = "r = 4 beats r = 2", row = "reduction=4", better_than = "reduction=2" }},
]
[axes]
reduction = [2, 4, 8]
"""


def error_of(reduction: int, seed: int) -> float:
    return TRUE_ERROR[reduction] + random.Random(f"{reduction}/{seed}").gauss(0, NOISE)


def noisy_train(cfg, *, should_stop=None, log=None, **_hooks):
    """run_training's contract: a result per (point, seed), each start logged."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    reduction = cfg.model_options["reduction"]
    with open(out / "trainings.log", "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "reduction": reduction, "seed": cfg.seed})
                 + "\n")
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        if should_stop and should_stop():
            raise SenetError("stopped on request")
        time.sleep(0.02)
    return {"final_val_top1_err": error_of(reduction, cfg.seed), "mlflow_run_id": None}


def _worker_main(storage: str, runs_dir: str) -> None:
    from senet.worker.loop import WorkerConfig, run_worker

    run_worker(WorkerConfig(grids=["adaptive"], storage=storage, runs_dir=runs_dir,
                            device="cpu", heartbeat_s=0.3, grace_s=5.0), train_fn=noisy_train)


def replay(design: seq.Design, claims: list[dict], ids: dict[int, str]) -> dict[str, int]:
    """Seeds per point that adaptive seeds reach with every seed finishing at once."""
    by_point = {pid: r for r, pid in ids.items()}
    board = {pid: adaptive.PointSeeds([error_of(r, s) for s in range(design.min_seeds)], 0,
                                      set(range(design.min_seeds)))
             for r, pid in ids.items()}
    while asks := adaptive.points_to_extend(design, claims, board):
        for pid in asks:
            seed = len(board[pid].used)
            board[pid].used.add(seed)
            board[pid].values.append(error_of(by_point[pid], seed))
    return {by_point[pid]: point.tried for pid, point in board.items()}


def write_grid(folder: Path, max_seeds: int = 5) -> Path:
    path = folder / "adaptive.toml"
    path.write_text(GRID.format(max=max_seeds))
    return path


# ---------------------------------------------------------------------------
# Grid files


def test_grid_file_adaptive_seeds(tmp_path):
    from analysis.runs import grid_slots

    path = write_grid(tmp_path, 6)
    grid = load_grid(path)
    assert grid.adaptive is not None and (grid.adaptive.min, grid.adaptive.max) == (2, 6)
    assert grid.seeds == [0, 1] and grid.adaptive.alpha == 0.05
    # The tables find the runs of every seed the queue may add, not only the first two.
    assert sorted({seed for _, seed, _ in grid_slots(str(path)).values()}) == list(range(6))


@pytest.mark.parametrize("seeds, where, needle", [
    ("{ min = 1, max = 4 }", "seeds.min", "integer >= 2"),
    ("{ min = 3, max = 2 }", "seeds.max", "from min (3) to 40"),
    ("{ min = 2 }", "seeds", "max is missing"),
    ("{ min = 2, max = 4, alpha = 0.7 }", "seeds.alpha", "between 0 and 0.5"),
    ("{ min = 2, max = 4, most = 9 }", "seeds.most", "min, max, alpha"),
])
def test_grid_file_adaptive_seed_errors(tmp_path, seeds, where, needle):
    path = tmp_path / "bad.toml"
    path.write_text(GRID.format(max=5).replace("seeds = { min = 2, max = 5 }", f"seeds = {seeds}"))
    with pytest.raises(SenetError) as info:
        load_grid(path)
    assert f"bad.toml:{where}: " in str(info.value) and needle in str(info.value), info.value


# ---------------------------------------------------------------------------
# The seed-adding step


def test_only_points_of_open_claims_get_a_seed():
    design = seq.Design(2, 4)
    claims = [
        {"text": "a beats b", "row": "a", "ref": "b", "kind": "better_than", "effect": None},
        {"text": "c beats b", "row": "c", "ref": "b", "kind": "better_than", "effect": None},
    ]
    board = {"a": adaptive.PointSeeds([1.0, 1.1, 0.9], 0, {0, 1, 2}),   # far better than b
             "b": adaptive.PointSeeds([9.0, 9.2, 9.1], 0, {0, 1, 2}),
             "c": adaptive.PointSeeds([9.1, 8.9], 0, {0, 1}),
             "d": adaptive.PointSeeds([5.0, 5.0], 0, {0, 1})}              # in no claim
    assert adaptive.judge(design, claims[0], board).state == seq.FOR
    # c is behind b: only c is asked (b already has the seed c's next look needs)
    assert adaptive.points_to_extend(design, claims, board) == {"c": ["c beats b"]}
    board["c"].pending = 1  # queued: nothing more until it finishes
    assert adaptive.points_to_extend(design, claims, board) == {}
    board["c"] = adaptive.PointSeeds([9.1, 8.9, 9.3], 0, {0, 1, 2})
    assert adaptive.points_to_extend(design, claims, board) == {"b": ["c beats b"],
                                                                "c": ["c beats b"]}
    board["b"].used |= {3, 4}  # max reached (two seeds failed): the claim is undecided
    assert adaptive.points_to_extend(design, claims, board) == {}
    assert adaptive.judge(design, claims[1], board).state == seq.UNDECIDED


# ---------------------------------------------------------------------------
# Two workers


def test_two_workers_add_seeds_only_where_a_claim_is_open_and_train_each_once(
        tmp_path, tracking_uri, capsys):
    grid_path = write_grid(tmp_path, max_seeds=5)
    storage = str(tmp_path / "q.journal")
    runs_dir = tmp_path / "runs"
    assert cli(["queue", str(grid_path), "--storage", storage,
                "--tracking-uri", tracking_uri]) == 0
    assert "adaptive seeds: 2 per point to start" in capsys.readouterr().out
    grid = load_grid(grid_path)
    ids = {p.settings["reduction"]: p.id for p in grid.points}
    queue = adaptive.GridQueue.open(open_storage(storage), "adaptive")
    claims = queue.attrs()[adaptive.A_CLAIMS]
    expected = replay(seq.Design(2, 5), claims, ids)
    # This noise decides r = 8's claim early and leaves r = 4's open until max.
    assert expected == {2: 5, 4: 5, 8: 3}, expected

    ctx = warm_procs.context()
    procs = [ctx.Process(target=_worker_main, args=(storage, str(runs_dir))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert not any(p.is_alive() for p in procs), "workers did not leave"

    starts = [json.loads(line) for log in runs_dir.glob("*/trainings.log")
              for line in log.read_text().splitlines()]
    trained = [(s["reduction"], s["seed"]) for s in starts]
    assert len(trained) == len(set(trained)) == sum(expected.values())  # none twice
    per_point = {r: sorted(s for rr, s in trained if rr == r) for r in TRUE_ERROR}
    assert per_point == {r: list(range(n)) for r, n in expected.items()}
    assert len({s["pid"] for s in starts}) == 2  # both workers trained
    tickets = queue.tickets()
    assert {t.state.name for t in tickets} == {"COMPLETE"} and len(tickets) == len(trained)
    attrs = queue.attrs()
    board = adaptive.board_of(queue, attrs)
    design = adaptive.design_of(attrs)
    states = [adaptive.judge(design, c, board).state for c in claims]
    assert states == [seq.FOR, seq.UNDECIDED]
    parent = MlflowClient(attrs[tr.A_TRACKING_URI]).get_run(attrs[tr.A_PARENT_RUN])
    assert parent.info.status == "FINISHED"

    # Queueing the grid again keeps the seeds the workers added, and queues nothing.
    assert cli(["queue", str(grid_path), "--storage", storage,
                "--tracking-uri", tracking_uri]) == 0
    assert "all 13 trainings are already done; nothing queued" in capsys.readouterr().out
    assert len(queue.attrs()[tr.A_SLOTS]) == len(trained)
    assert queue.counts().done == len(trained)
    # A lower max drops the seeds above it from the grid (they stay trained).
    grid_path.write_text(GRID.format(max=4))
    assert cli(["queue", str(grid_path), "--storage", storage,
                "--tracking-uri", tracking_uri]) == 0
    assert len(queue.attrs()[tr.A_SLOTS]) == len(trained) - 2


def test_queue_refuses_adaptive_seeds_without_claims_and_with_seeds(tmp_path, tracking_uri,
                                                                    capsys):
    path = write_grid(tmp_path)
    storage = str(tmp_path / "q.journal")
    assert cli(["queue", str(path), "--storage", storage, "--seeds", "3"]) == 2
    assert "--seeds 3: this grid adds seeds where its claims are undecided" in \
        capsys.readouterr().err
    text = path.read_text()
    path.write_text(text[:text.index("claims")] + text[text.index("[axes]"):])
    assert cli(["queue", str(path), "--storage", storage, "--tracking-uri", tracking_uri]) == 2
    assert "no top-1 claim on two of its rows" in capsys.readouterr().err
    assert not Path(storage).exists()  # refused before the queue was touched


# ---------------------------------------------------------------------------
# Tables


def test_table_shows_each_claims_state_seeds_and_hours_saved(tmp_path):
    spec = from_grid(load_grid(write_grid(tmp_path, max_seeds=5)))
    ids = {p.settings["reduction"]: p.point_id for p in spec.points}
    seeds = {2: 5, 4: 5, 8: 3}
    rows = [{"run_id": f"{r}-{s}", "experiment_id": "1", "status": "FINISHED",
             "start_time": 0, "end_time": 360_000 * (1 + (r == 8)),  # 0.1 h, r = 8 0.2 h
             "grid": spec.name, "point": ids[r], "seed": s, "label": f"reduction={r}",
             "fail_reason": "", "metric.final_val_top1_err": error_of(r, s),
             "metric.final_val_top5_err": 0.0, "param.num_classes": "10"}
            for r, n in seeds.items() for s in range(n)]
    from analysis.gridspec import with_seeds_run

    runs = pd.DataFrame(rows)
    spec = with_seeds_run(spec, runs)
    table = build_table(spec, runs, load_paper_numbers())
    lines = table.verdicts[table.verdicts.index(next(v for v in table.verdicts
                                                     if v.startswith("Adaptive seeds"))):]
    assert lines[1].startswith("r = 8 is worse than r = 2 (top-1): decided for at 3 seeds per "
                               "row (Δ +"), lines[1]
    assert lines[2].startswith("r = 4 beats r = 2 (top-1): undecided at max, 5 seeds per row"), \
        lines[2]
    # Saved against 5 seeds everywhere: r = 8's two, at its 0.2 h each.
    assert lines[3] == ("Seeds used: reduction=2 5, reduction=4 5, reduction=8 3; 13 trainings "
                        "against 15 at max everywhere, 2 fewer ≈ 0.40 device-hours saved "
                        "(each point's mean run time)."), lines[3]
    assert list(table.rows["n"]) == [5, 5, 3]


# ---------------------------------------------------------------------------
# senet plan --seeds


def test_plan_seeds_pools_the_seed_std_from_finished_runs(tmp_path, tracking_uri, capsys):
    grid = write_grid(tmp_path)
    assert cli(["plan", str(grid), "--seeds", "--tracking-uri", tracking_uri,
                "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "seed std 0.53: default for builtin" in out
    assert "effect +0.53 (none given: one seed std)" in out
    # Finished runs with repeated seeds: r = 2 (4 seeds) and r = 8 (3 seeds).
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("noise")
    values = {"2": [10.0, 10.4, 9.8, 10.2], "8": [14.1, 13.7, 14.0]}
    for reduction, errors in values.items():
        for seed, error in enumerate(errors):
            run = client.create_run(experiment)
            for key, value in {"model": "se_resnet20", "dataset": "builtin", "seed": seed,
                               "reduction": reduction}.items():
                client.log_param(run.info.run_id, key, value)
            client.log_metric(run.info.run_id, "final_val_top1_err", error)
            client.set_terminated(run.info.run_id, "FINISHED")
    squares = sum(float(np.var(v) * len(v)) for v in values.values())
    pooled = (squares / (len(values["2"]) - 1 + len(values["8"]) - 1)) ** 0.5
    assert cli(["plan", str(grid), "--seeds", "--tracking-uri", tracking_uri, "--device", "cpu",
                "--effect", "1.0"]) == 0
    out = capsys.readouterr().out
    assert f"seed std {pooled:.2f}: pooled from 7 finished runs of 2 points" in out, out
    assert "effect -1.00 (given with --effect)" in out
    assert "fixed: 4 seeds per row" in out and "adaptive: seeds = { min = 2, max = 4 }" in out
