"""Training identity keys and `senet plan`: unique trainings, their state, their cost."""

from __future__ import annotations

import json
import textwrap

import pytest

from senet.cli import main
from senet.queue.plan import EVAL_COST, make_plan
from senet.settings.grid import load_grid
from senet.settings.identity import training_key

BASE = {"model": "se_resnet20", "dataset": "builtin", "preset": "fast"}


def test_key_is_resolved_settings_plus_seed():
    assert training_key(BASE, 0) == training_key({**BASE, "reduction": 16}, 0)  # the default
    assert training_key(BASE, 0) == training_key({**BASE, "epochs": 3}, 0)  # the preset's
    assert training_key(BASE, 0) == training_key({**BASE, "compile": True, "workers": 0}, 0)
    assert training_key(BASE, 0) != training_key(BASE, 1)
    assert training_key(BASE, 0) != training_key({**BASE, "reduction": 8}, 0)
    assert training_key(BASE, 0) != training_key({**BASE, "epochs": 4}, 0)
    assert training_key(BASE, 0) != training_key({**BASE, "preset": "cifar-preact"}, 0)


def test_options_a_model_does_not_have_leave_its_key():
    """cifar-preact-ablation is cifar-preact plus `[model] bias = false`, which a plain
    ResNet does not have: its plain baselines are the same trainings under both."""
    plain = {"model": "resnet110", "dataset": "cifar10", "preset": "cifar-preact"}
    ablation = {**plain, "preset": "cifar-preact-ablation"}
    assert training_key(plain, 0) == training_key(ablation, 0)
    se = {**plain, "model": "se_resnet110"}
    assert training_key(se, 0) != training_key({**se, "preset": "cifar-preact-ablation"}, 0)
    # Keys that were right stay as they were (runs in existing stores are found by key):
    # these are the keys a20f332 gave the ablation's SE row and Table 4's ResNet-110.
    assert training_key({**se, "preset": "cifar-preact-ablation"}, 0) == "dfa9aaf49421a308"
    assert training_key(plain, 0) == "446ad14e4b6e4414"


def test_shipped_cifar_grids_train_each_plain_baseline_once_per_seed(tmp_path, monkeypatch):
    """Table 4's ResNet-110 and ResNet-164 (cifar-preact) are the ablations' baselines
    (cifar-preact-ablation): one training per seed and dataset, queued or planned."""
    monkeypatch.chdir(tmp_path)  # no queue here: a plan before queueing
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage

    names = ["main", "gate", "se3x3", "reduction"]
    grids = [load_grid(f"{ds}/{n}") for ds in ("cifar10", "cifar100") for n in names]
    plan = make_plan(grids, storage_url=None,
                     tracking_uri=f"sqlite:///{tmp_path}/none.db")
    for model in ("resnet110", "resnet164"):
        plain = [t for t in plan.trainings.values() if t.model == model]
        assert len(plain) == 6, model  # 3 seeds x 2 datasets
    r110 = next(t for t in plan.trainings.values() if t.model == "resnet110")
    assert r110.grids == ["cifar10/main", "cifar10/gate", "cifar10/reduction"]
    storage = open_storage(str(tmp_path / "q.journal"))
    q.queue_grid(storage, load_grid("cifar10/main"), [0], False)
    result = q.queue_grid(storage, load_grid("cifar10/gate"), [0], False)
    assert (result.added, result.shared) == (3, 1)  # the ResNet-110 row was queued by main


def _grid(tmp_path, name, body):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(body))
    return load_grid(path)


SHARED = """\
    title = "{title}"
    dataset = "builtin"
    preset = "fast"
    model = "se_resnet20"
    subset = 600
    seeds = [0, 1]

    [[variants]]
    label = "ResNet-20"
    model = "resnet20"

    [[variants]]
    label = "SE"
    reduction = {r}
"""


def test_plan_counts_each_training_once_across_grids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no queue here: nothing counts as queued
    a = _grid(tmp_path, "a", SHARED.format(title="A", r=16))
    b = _grid(tmp_path, "b", SHARED.format(title="B", r=4))
    plan = make_plan([a, b], storage_url=None,
                     tracking_uri=f"sqlite:///{tmp_path}/none.db", device="cpu")
    # 8 slots; the ResNet-20 rows (2 seeds) are shared: 6 unique trainings
    assert sum(g.points * g.seeds for g in plan.grids) == 8
    assert len(plan.trainings) == 6
    shared = [t for t in plan.trainings.values() if t.model == "resnet20"]
    assert len(shared) == 2 and all(t.grids == [a.name, b.name] for t in shared)
    assert plan.counts() == {"done": 0, "running": 0, "queued": 0, "failed": 0, "new": 6}
    assert not (tmp_path / "none.db").exists()  # planning never creates a store

    # Cost: epochs x (train + eval/3) images at the table's img/s (cpu rows: 521 and 493).
    key = shared[0].key
    assert plan.images[key] == (600, 200)  # the suite's built-in data: 20 val images/class
    assert plan.hours(key) == pytest.approx(3 * (600 + EVAL_COST * 200) / 521 / 3600)
    se = next(t for t in plan.trainings.values() if t.model == "se_resnet20")
    assert plan.hours(se.key) == pytest.approx(3 * (600 + EVAL_COST * 200) / 493 / 3600)


def test_plan_reads_states_from_the_queue(tmp_path):
    from senet.queue import tickets as q

    a = _grid(tmp_path, "a", SHARED.format(title="A", r=16))
    b = _grid(tmp_path, "b", SHARED.format(title="B", r=16))  # the very same trainings
    storage_url = str(tmp_path / "q.journal")
    from senet.queue.storage import open_storage

    q.queue_grid(open_storage(storage_url), a, None, False)
    plan = make_plan([a, b], storage_url=storage_url, device="cpu",
                     tracking_uri=f"sqlite:///{tmp_path}/none.db")
    assert len(plan.trainings) == 4
    assert plan.counts()["queued"] == 4  # queued through grid a, so b needs nothing new
    hours, unknown = plan.hours_left()
    assert unknown == 0 and hours == pytest.approx(sum(plan.hours(k) for k in plan.trainings))
    assert "4 queued" in plan.summary_line()


def test_points_run_backwards_on_every_other_seed(tmp_path):
    """Tickets are claimed lowest number first. With two workers and two points, the worker
    that finishes first must draw the other point next, not every seed of the fast one."""
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage

    grid = _grid(tmp_path, "a", SHARED.format(title="A", r=16).replace(
        "seeds = [0, 1]", "seeds = [0, 1, 2]"))
    storage = open_storage(str(tmp_path / "q.journal"))
    q.queue_grid(storage, grid, None, False)
    tickets = sorted(q.GridQueue.open(storage, grid.name).tickets(), key=lambda t: t.trial_id)
    plain, se = (p.id for p in grid.points)
    assert [t.slot for t in tickets] == [(plain, 0), (se, 0), (se, 1), (plain, 1),
                                         (plain, 2), (se, 2)]


def test_plan_skips_a_slot_whose_ticket_is_not_added_yet(tmp_path):
    """Another `senet queue` records a grid's slots first and adds their tickets after:
    a plan or a count made in between must not trip over a slot with no ticket, nor call
    it failed."""
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage

    a = _grid(tmp_path, "a", SHARED.format(title="A", r=16))
    storage_url = str(tmp_path / "q.journal")
    storage = open_storage(storage_url)
    q.queue_grid(storage, a, None, False)
    queue = q.GridQueue.open(storage, a.name)
    slots = queue.attrs()[q.A_SLOTS]
    queue.set_attr(q.A_SLOTS, [*slots, ["not-yet", 7, "a-key-with-no-ticket"]])
    plan = make_plan([a], storage_url=storage_url, device="cpu",
                     tracking_uri=f"sqlite:///{tmp_path}/none.db")
    assert plan.counts()["queued"] == 4
    counts = queue.counts()  # what `senet status` and the workers' progress lines show
    assert (counts.queued, counts.failed, counts.total) == (4, 0, 4)


def _finished_runs(tracking_uri: str, runs: list[tuple[float, float | None]]) -> None:
    """FINISHED se_resnet20 runs at batch 128 on cpu with these (img/s, GMACs)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("cpu-runs")
    for rate, gmacs in runs:
        run = client.create_run(exp, tags={"senet.device": "cpu"})
        client.log_param(run.info.run_id, "model", "se_resnet20")
        client.log_param(run.info.run_id, "batch_size", "128")
        client.log_metric(run.info.run_id, "img_per_s", rate)
        if gmacs is not None:
            client.log_metric(run.info.run_id, "gmacs", gmacs)
        client.set_terminated(run.info.run_id, "FINISHED")


def test_throughput_from_tracking_store_beats_the_table(tmp_path, tracking_uri):
    _finished_runs(tracking_uri, [(100.0, None), (300.0, None), (200.0, None)])
    a = _grid(tmp_path, "a", SHARED.format(title="A", r=16).replace("subset = 600",
                                                                     "batch_size = 128"))
    plan = make_plan([a], storage_url=None,
                     tracking_uri=tracking_uri, device="cpu")
    assert plan.throughput["se_resnet20"].img_per_s == 200.0  # the median
    assert "3 finished runs" in plan.throughput["se_resnet20"].source
    assert plan.throughput["resnet20"].img_per_s == 521  # no runs: the table


def test_unmeasured_models_are_extrapolated_and_say_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path, "g", """\
        title = "deep"
        dataset = "cifar10"
        preset = "cifar-preact"
        model = "resnet56"
        seeds = [0]

        [[variants]]
        label = "ResNet-56"
    """)
    plan = make_plan([grid], storage_url=None,
                     tracking_uri=f"sqlite:///{tmp_path}/none.db")
    rate = plan.throughput["resnet56"]
    assert "extrapolated from resnet" in rate.source
    assert 10222 < rate.img_per_s < 62845  # between ResNet-110 and ResNet-20 on the H200


def test_plan_cli_json(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no queue here: plan prices the grid before queueing
    path = tmp_path / "a.toml"
    path.write_text(textwrap.dedent(SHARED.format(title="A", r=16)))
    code = main(["plan", str(path), str(path), "--json", "--device", "cpu",
                 "--tracking-uri", f"sqlite:///{tmp_path}/none.db"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["unique"] == 4 and data["total"]["new"] == 4
    assert [g["slots"] for g in data["grids"]] == [4, 4]
    assert all(t["epochs"] == 3 and t["images_per_training"] == 1800
               for t in data["trainings"])


def test_plan_in_packs_costs_each_pack_at_the_assumed_gain(tmp_path, capsys, monkeypatch):
    from senet.queue.plan import Packing

    monkeypatch.chdir(tmp_path)  # no queue here: nothing counts as queued
    grid = _grid(tmp_path, "a", SHARED.format(title="A", r=4))
    kwargs = dict(storage_url=None,
                  tracking_uri=f"sqlite:///{tmp_path}/none.db", device="cpu")
    alone = make_plan([grid], **kwargs)
    packed = make_plan([grid], **kwargs, packing=Packing(size=8, gain=2.0))
    hours = {t.model: alone.hours(k) for k, t in alone.trainings.items()}
    # Two packs: the two ResNet-20 seeds, the two SE seeds; each runs at 2x one training.
    assert [sorted(alone.trainings[k].model for k in g)
            for g in packed.packs(list(packed.trainings))] == [["resnet20", "resnet20"],
                                                               ["se_resnet20", "se_resnet20"]]
    assert packed.hours_left()[0] == pytest.approx(hours["resnet20"] + hours["se_resnet20"])
    assert alone.hours_left()[0] == pytest.approx(2 * (hours["resnet20"] + hours["se_resnet20"]))
    assert "in 2 packs of up to 8 (assumed: a pack of n trains at min(n, 2)" in \
        packed.summary_line()
    assert main(["plan", str(tmp_path / "a.toml"), "--pack", "4", "--device", "cpu",
                 "--storage", kwargs["storage_url"], "--tracking-uri", kwargs["tracking_uri"]]
                ) == 2
    assert "--pack needs --pack-gain G >= 1" in capsys.readouterr().err


def _gmacs(model: str, **options) -> float:
    import torch

    from senet.models import build
    from senet.models.flops import count

    with torch.device("meta"):
        net = build(model, **options)
    return count(net, 224 if "50" in model else 32).gmacs


def test_rates_follow_multiply_adds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no queue here: a plan before queueing
    stores = {"storage_url": None,
              "tracking_uri": f"sqlite:///{tmp_path}/none.db"}
    plan = make_plan([load_grid("imagenet/nosqueeze")], **stores)
    se, nosqueeze = plan.throughput["se_resnet50"], plan.throughput["se_resnet50 @ 4.27 GMACs"]
    assert se.img_per_s == 5861  # the table's row
    # NoSqueeze's gate runs at full resolution: 4.27 GMACs against 3.87, so 10 % slower.
    ratio = _gmacs("se_resnet50") / _gmacs("se_resnet50", squeeze="none")
    assert nosqueeze.img_per_s == pytest.approx(5861 * ratio) and 0.90 < ratio < 0.91
    assert nosqueeze.source.startswith("scaled by multiply-adds (3.872 -> 4.275 GMACs)")
    main = make_plan([load_grid("cifar10/main")], **stores)
    wrn, r110 = main.throughput["wrn16_8"], main.throughput["resnet110"]
    # WRN-16-8 does 6x the multiply-adds of ResNet-110, so it cannot be faster than it
    assert wrn.img_per_s * _gmacs("wrn16_8") == pytest.approx(r110.img_per_s * _gmacs("resnet110"))
    assert wrn.img_per_s < r110.img_per_s / 6
    assert wrn.source.startswith("extrapolated from resnet110 by multiply-adds")
    assert {t.device for t in main.throughput.values()} == {"NVIDIA H200"}


def test_each_figure_names_the_device_its_rate_came_from(tmp_path, tracking_uri, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no queue here: a plan before queueing
    # the last run is of a variant with other multiply-adds: it prices nothing here
    _finished_runs(tracking_uri, [(480.0, 0.0410), (500.0, 0.0410), (90.0, 0.3)])
    grid = _grid(tmp_path, "a", SHARED.format(title="A", r=16).replace("subset = 600",
                                                                        "batch_size = 128"))
    plan = make_plan([grid], storage_url=None,
                     tracking_uri=tracking_uri, device="NVIDIA H200")
    se, plain = plan.throughput["se_resnet20"], plan.throughput["resnet20"]
    assert (se.img_per_s, se.device) == (490.0, "cpu")  # the median of the matching runs
    assert (plain.img_per_s, plain.device) == (62845, "NVIDIA H200")
    line = plan.summary_line()
    assert "at rates from several devices (" in line
    assert " on NVIDIA H200, " in line and " on cpu)" in line
    # Small figures are given in minutes, never as "0.0 device-hours".
    assert "0.0 device-hours" not in line and "device-minutes" in line
