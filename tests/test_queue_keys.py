"""Each training once (issue 10) and the queue's bookkeeping faults (issue 13, items 3, 5,
6, 7): training keys across grids, concurrent `senet queue`, the claimer's grace, grids
edited after queueing, and the checks `senet queue` makes before queueing anything."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import warm_procs

from senet.cli import main as cli
from senet.queue import tickets as q
from senet.queue.storage import open_storage
from senet.tracking import store as tr

BASE = """\
{name}title = "t"
dataset = "builtin"
preset = "fast"
model = "se_resnet20"
epochs = 1
subset = 100
batch_size = 50
workers = 0
seeds = {seeds}
"""


def grid_file(path: Path, body: str, *, name: str | None = None, seeds: str = "[0]") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    declared = f'name = "{name}"\n' if name else ""
    path.write_text(BASE.format(name=declared, seeds=seeds) + body)
    return path


def queue_cmd(*args: str) -> int:
    return cli(["queue", *args])


def ticket_states(storage: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for queue in q.GridQueue.all(open_storage(storage)):
        for t in queue.tickets():
            by_state = out.setdefault(queue.name, {})
            by_state[t.state.name] = by_state.get(t.state.name, 0) + 1
    return out


def counting_trainer(calls: list):
    def train(cfg, *, should_stop=None, log=None):
        calls.append((cfg.out, cfg.tags.get(tr.T_KEY), cfg.model_options.get("reduction")))
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        return {"final_val_top1_err": 50.0, "mlflow_run_id": None, "status": "FINISHED"}
    return train


def drain(storage: str, calls: list) -> None:
    from senet.worker.loop import Worker, WorkerConfig

    cfg = WorkerConfig(grids=None, storage=storage, runs_dir=str(Path(storage).parent / "runs"),
                       device="cpu", heartbeat_s=0.5, grace_s=30)
    Worker(cfg, train_fn=counting_trainer(calls)).run()


# ---------------------------------------------------------------------------
# Issue 10: a point shared by grids is queued once, trained once, done in each


def test_shared_points_train_once_and_count_once(tmp_path, tracking_uri, capsys):
    # `reduction = 16` is the default: grid a's r=16 row and grid b's plain SE row are one
    # training, spelled differently. r=4 is in both grids, spelled the same.
    a = grid_file(tmp_path / "a.toml", "[axes]\nreduction = [4, 16]\n", name="a")
    b = grid_file(tmp_path / "b.toml", '[axes]\nreduction = [4, 8]\n[[variants]]\n'
                  'label = "default SE"\n', name="b")
    storage = str(tmp_path / "q.journal")
    assert queue_cmd(str(a), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    assert queue_cmd(str(b), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    out = capsys.readouterr().out
    assert "b: 3 points x 1 seeds; queued 1 new; 2 already queued" in out
    assert "2 of them by another grid: trained once" in out
    assert "plan: 3 unique trainings: 0 done, 0 running, 3 queued" in out
    assert ticket_states(storage) == {"a": {"WAITING": 2}, "b": {"WAITING": 1}}

    calls: list = []
    drain(storage, calls)
    assert sorted(r for _, _, r in calls) == [4, 8, 16]  # 5 grid slots, 3 trainings
    folders = [Path(out).name for out, _, _ in calls]
    keys = [key for _, key, _ in calls]
    assert folders == [f"se_resnet20-{k}" for k in keys]  # runs/<model>-<key>
    storage_obj = open_storage(storage)
    for name in ("a", "b"):
        c = q.GridQueue.open(storage_obj, name).counts()
        assert (c.done, c.running, c.queued, c.failed) == (c.total, 0, 0, 0)
        assert c.total == {"a": 2, "b": 3}[name]
    overall, slots = q.overall_counts(storage_obj)
    assert (overall.total, overall.done, slots) == (3, 3, 5)

    # Queued again after the work: every training is done, nothing is added.
    assert queue_cmd(str(b), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    out = capsys.readouterr().out
    assert "b: all 3 trainings are already done; nothing queued" in out
    assert cli(["status", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "all grids: 3 unique trainings for 5 grid slots: 3 done" in out


def test_a_key_done_in_another_grid_is_never_trained_again(tmp_path, tracking_uri):
    """Even a duplicate ticket (queued without the lock) closes instead of training."""
    a = grid_file(tmp_path / "a.toml", "[axes]\nreduction = [4]\n", name="a")
    storage = str(tmp_path / "q.journal")
    assert queue_cmd(str(a), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    calls: list = []
    drain(storage, calls)
    queue = q.GridQueue.open(open_storage(storage), "a")
    done = queue.tickets()[0]
    queue.enqueue(done.point, done.seed, done.label, done.settings, key=done.key)
    drain(storage, calls)
    assert len(calls) == 1
    assert "already done by ticket" in queue.tickets()[-1].reason


# ---------------------------------------------------------------------------
# Item 3: two files with one stem are two grids; a name clash is one line


def test_same_stem_grids_stay_apart_and_a_clash_is_refused(tmp_path, tracking_uri, capsys):
    a = grid_file(tmp_path / "c10" / "reduction.toml", "[axes]\nreduction = [4]\n")
    b = grid_file(tmp_path / "c100" / "reduction.toml", "[axes]\nreduction = [8, 16]\n")
    storage = str(tmp_path / "q.journal")
    for g in (a, b):
        assert queue_cmd(str(g), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    assert ticket_states(storage) == {"c10/reduction": {"WAITING": 1},
                                      "c100/reduction": {"WAITING": 2}}
    clash = grid_file(tmp_path / "other" / "x.toml", "[axes]\nreduction = [2]\n",
                      name="c10/reduction")
    capsys.readouterr()
    assert queue_cmd(str(clash), "--storage", storage, "--tracking-uri", tracking_uri) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "already taken in this queue by" in err
    assert err.endswith('declare another with name = "..." at the top of the file')
    assert ticket_states(storage)["c10/reduction"] == {"WAITING": 1}


# ---------------------------------------------------------------------------
# Item 5: concurrent `senet queue` of one new grid


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_concurrent_queue_of_a_new_grid(tmp_path, kind, tracking_uri):
    if kind == "journal":
        # A fresh MLflow store too: the first use of a new SQLite file is part of the race
        # (its migrations take seconds, so once is enough: they do not depend on the kind
        # of queue storage, and the other cases race on a migrated store's experiment).
        tracking_uri = f"sqlite:///{tmp_path / 'fresh-mlflow.db'}"
    storage = str(tmp_path / "q.journal") if kind == "journal" else f"sqlite:///{tmp_path}/q.db"
    got = _concurrent_queue(tmp_path, storage, tracking_uri, "g")
    print(json.dumps({k: v for k, v in got.items() if k != "outputs"}))
    assert got["codes"] == [0, 0, 0, 0], got["outputs"]
    assert (got["experiments"], got["parents"], got["tickets"], got["duplicates"]) == (1, 1, 16, 0)
    assert got["running_parents"] == 1  # the one parent, with work queued: not a stray
    assert sum("queued 16 new" in out for out in got["outputs"]) == 1


def test_concurrent_queue_on_postgresql(tmp_path, postgres_url, unique_name, tracking_uri):
    grid_name = unique_name
    # The server outlives test runs and a training is queued once per store, whatever the
    # grid: seeds no earlier run used keep these 16 trainings new to it.
    first = int(unique_name[1:], 16)
    try:
        got = _concurrent_queue(tmp_path, postgres_url, tracking_uri, grid_name,
                                seeds=[first + i for i in range(4)])
    finally:
        storage = open_storage(postgres_url)
        if grid_name in {study.study_name for study in storage.get_all_studies()}:
            storage.delete_study(storage.get_study_id_from_name(grid_name))
    assert got["codes"] == [0, 0, 0, 0], got["outputs"]
    assert (got["experiments"], got["parents"], got["tickets"], got["duplicates"]) == (1, 1, 16, 0)


def _concurrent_queue(tmp_path: Path, storage: str, tracking_uri: str, name: str,
                      seeds: list[int] = [0, 1, 2, 3]) -> dict:  # noqa: B006 (never mutated)
    """4 `senet queue` processes of one new 16-slot grid at once; what they left."""
    # A shared server keeps grids of earlier runs: give this one a name of its own.
    grid = grid_file(tmp_path / "g.toml", "[axes]\nreduction = [2, 4, 8, 16]\n", name=name,
                     seeds=str(seeds))
    cmd = ["queue", str(grid), "--storage", storage, "--tracking-uri", tracking_uri]
    # Forked from a server that has imported senet, MLflow and Optuna once; each process
    # opens its own stores, and all four run `senet queue` as soon as all have started.
    ctx = warm_procs.context()
    barrier = ctx.Barrier(4)
    procs = [warm_procs.Senet(cmd, tmp_path / "out", cwd=tmp_path, barrier=barrier, ctx=ctx,
                              env={"OMP_NUM_THREADS": "1"}) for _ in range(4)]
    codes = [p.wait(timeout=300) for p in procs]
    outputs = [p.stdout + p.stderr for p in procs]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exps = [e for e in client.search_experiments() if e.name == name]
    parents = client.search_runs([e.experiment_id for e in exps],
                                 "tags.`senet.role` = 'grid'") if exps else []
    tickets = q.GridQueue.open(open_storage(storage), name).tickets()
    keys = [t.key for t in tickets]
    return {"codes": codes, "experiments": len(exps),
            "parents": len(parents), "tickets": len(tickets),
            "duplicates": len(keys) - len(set(keys)), "outputs": outputs,
            "running_parents": sum(r.info.status == "RUNNING" for r in parents)}


# ---------------------------------------------------------------------------
# Item 6: a reaper honours the grace the claiming worker recorded


def test_reapers_honour_the_claimers_grace(tmp_path):
    storage = open_storage(str(tmp_path / "q.journal"))
    queue, _ = q.GridQueue.open_or_create(storage, "g")
    queue.enqueue("p", 0, "p", {"model": "resnet20"}, key="k1")
    queue.enqueue("p", 1, "p", {"model": "resnet20"}, key="k2")
    first, second = queue.waiting()
    assert queue.try_claim(first, grace=200)  # a worker started with --grace 200
    assert queue.try_claim(second)  # an older worker: no grace recorded
    later = time.time() + 64
    # `senet status` reaps with its own 60 s: only the ticket without a recorded grace goes.
    assert [t.key for t in queue.reap(60, now=later)] == ["k2"]
    assert {t.key: t.state.name for t in queue.tickets() if t.state.name == "RUNNING"} == {
        "k1": "RUNNING"}
    assert [t.key for t in queue.reap(60, now=time.time() + 250)] == ["k1"]


# ---------------------------------------------------------------------------
# Item 7: a grid edited after queueing


def test_editing_a_grid_drops_and_adds_and_cancels(tmp_path, tracking_uri, capsys):
    path = grid_file(tmp_path / "g.toml", "[axes]\nreduction = [4, 8, 16]\n", name="g")
    storage = str(tmp_path / "q.journal")
    assert queue_cmd(str(path), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    capsys.readouterr()
    path.write_text(path.read_text().replace("[4, 8, 16]", "[4, 8, 2]"))
    assert queue_cmd(str(path), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    out = capsys.readouterr().out
    assert ("g: the grid changed since it was queued: drops reduction=16; adds reduction=2 "
            "(1 ticket(s) of dropped points cancelled)") in out
    queue = q.GridQueue.open(open_storage(storage), "g")
    c = queue.counts()
    assert (c.queued, c.total) == (3, 3)  # the grid as it now stands
    cancelled = [t for t in queue.tickets() if t.state.name == "PRUNED"]
    assert [t.label for t in cancelled] == ["reduction=16"]
    assert "removed from the grid" in cancelled[0].reason

    # Changing epochs changes every key: the old trainings are dropped, not listed twice.
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 2"))
    assert queue_cmd(str(path), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    c = q.GridQueue.open(open_storage(storage), "g").counts()
    assert (c.queued, c.total) == (3, 3)
    calls: list = []
    drain(storage, calls)
    assert sorted(r for _, _, r in calls) == [2, 4, 8]


# ---------------------------------------------------------------------------
# Issue 11 / 13: one line before anything is queued


def test_queue_checks_data_and_paper_table_first(tmp_path, tracking_uri, capsys):
    storage = str(tmp_path / "q.journal")
    missing = grid_file(tmp_path / "m.toml", '[axes]\nreduction = [4]\n').read_text()
    missing = missing.replace('dataset = "builtin"', 'dataset = "folder:/does/not/exist"')
    missing = missing.replace('model = "se_resnet20"', 'model = "se_resnet20"\nsubset = 10')
    (tmp_path / "m.toml").write_text(missing.replace("subset = 100\n", ""))
    capsys.readouterr()
    assert queue_cmd(str(tmp_path / "m.toml"), "--storage", storage,
                     "--tracking-uri", tracking_uri) == 2
    assert "no such directory /does/not/exist; fix the path" in capsys.readouterr().err
    one = tmp_path / "one"
    for split in ("train", "val"):
        (one / split / "cat").mkdir(parents=True)
    (tmp_path / "m.toml").write_text(
        (tmp_path / "m.toml").read_text().replace("/does/not/exist", str(one)))
    assert queue_cmd(str(tmp_path / "m.toml"), "--storage", storage,
                     "--tracking-uri", tracking_uri) == 2
    assert "has 1 class folder; a classifier needs at least 2 classes" in capsys.readouterr().err
    assert not Path(storage).exists()  # nothing queued, no queue file made

    table = grid_file(tmp_path / "p.toml", 'paper_table = "no-such-table"\n[axes]\n'
                      'reduction = [4]\n', name="p")
    assert queue_cmd(str(table), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    out = capsys.readouterr().out
    assert "warning: " in out and "paper_table 'no-such-table' names no table" in out


# ---------------------------------------------------------------------------
# Tables find a grid's runs by key


def test_tables_read_a_shared_run_under_each_grids_own_label(tmp_path, tracking_uri):
    from mlflow import MlflowClient

    from analysis.runs import fetch_runs, grid_slots

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("a")

    def run(tags: dict[str, str], top1: float) -> str:
        r = client.create_run(exp, tags={tr.T_SEED: "0", **tags})
        client.log_metric(r.info.run_id, "final_val_top1_err", top1)
        client.set_terminated(r.info.run_id)
        return r.info.run_id

    shared = run({tr.A_GRID: "a", tr.T_POINT: "pa", tr.T_LABEL: "r=16", tr.T_KEY: "K1"}, 7.0)
    # b's reduction=4 trained before epochs changed: another key, not in today's table.
    run({tr.A_GRID: "b", tr.T_POINT: "old", tr.T_LABEL: "reduction=4", tr.T_KEY: "K0"}, 9.0)
    legacy = run({tr.A_GRID: "b", tr.T_POINT: "pb3", tr.T_LABEL: "reduction=8"}, 8.0)  # no key
    slots = {"K1": ("pb", 0, "default SE"), "K2": ("pb2", 0, "reduction=4")}
    b = fetch_runs(client, "b", slots=slots)
    assert sorted(zip(b["run_id"], b["point"], b["label"], strict=True)) == sorted(
        [(shared, "pb", "default SE"), (legacy, "pb3", "reduction=8")])
    assert list(b["grid"]) == ["b", "b"]
    a = fetch_runs(client, "a", slots={"K1": ("pa", 0, "r=16")})
    assert list(a["run_id"]) == [shared] and list(a["metric.final_val_top1_err"]) == [7.0]
    # A grid file found by name gives its keys; a name with no file falls back to tags.
    keys = grid_slots("cifar10/reduction")
    assert keys and len(keys) == len(set(keys)) and all(len(k) == 16 for k in keys)
    assert grid_slots("no/such/grid") is None


# ---------------------------------------------------------------------------
# Issue 21: any grid queued under another protocol, beside the file's own


def test_queue_with_preset_is_a_grid_of_its_own(tmp_path, tracking_uri, capsys):
    a = grid_file(tmp_path / "x" / "a.toml", "[axes]\nreduction = [4, 16]\n")
    storage = str(tmp_path / "q.journal")
    assert queue_cmd(str(a), "--storage", storage, "--tracking-uri", tracking_uri) == 0
    assert queue_cmd(str(a), "--preset", "cifar-preact", "--storage", storage,
                     "--tracking-uri", tracking_uri) == 0
    out = capsys.readouterr().out
    assert "x/a@cifar-preact: 2 points x 1 seeds; queued 2 new; 0 already queued" in out
    # the file's own grid is untouched: nothing cancelled, both wait
    assert ticket_states(storage) == {"x/a": {"WAITING": 2}, "x/a@cifar-preact": {"WAITING": 2}}
    queue = q.GridQueue.open(open_storage(storage), "x/a@cifar-preact")
    assert {t.settings["preset"] for t in queue.tickets()} == {"cifar-preact"}
    own = q.GridQueue.open(open_storage(storage), "x/a")
    assert not {t.key for t in queue.tickets()} & {t.key for t in own.tickets()}
    assert cli(["status", f"{a}@cifar-preact", "--storage", storage]) == 0
    assert "x/a@cifar-preact" in capsys.readouterr().out
