"""`senet plan`: what a set of grids will cost before any device time is spent.

Grids are expanded to trainings, trainings are reduced to unique keys (see
senet.settings.identity), keys already done, running or queued in the storage are counted,
and the rest is projected to device-hours from measured throughput: finished runs in
the tracking store first (they log img/s), then the table in senet/throughput.toml. A
network the table lacks, or a variant of one with other multiply-adds (NoSqueeze, SE_3x3,
another r), is priced from the nearest measured network by multiply-adds: time per image
taken as proportional to them. Every figure says which device its rate was measured on.
"""

from __future__ import annotations

import functools
import math
import statistics
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from senet.errors import SenetError
from senet.settings.identity import key_of, resolved_settings

THROUGHPUT_TABLE = resources.files("senet") / "throughput.toml"
# An evaluation image is a forward pass only: about a third of a training image's cost.
EVAL_COST = 1 / 3
# Standard split sizes, used when no data root is given to count a tree.
KNOWN_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000),
               "imagenet": (1_281_167, 50_000)}
STATES = ("done", "running", "queued", "failed", "new")


# Variants within this fraction of their network's multiply-adds share its rate.
SAME_COST = 0.01


@dataclass
class Training:
    key: str
    seed: int
    settings: dict[str, Any]
    resolved: dict[str, Any]
    grids: list[str] = field(default_factory=list)
    state: str = "new"
    cost: str = ""  # the throughput entry that prices it (see Plan.throughput)

    @property
    def model(self) -> str:
        return self.settings["model"]


@dataclass
class Throughput:
    img_per_s: float | None
    source: str  # where the figure came from, in words
    device: str | None = None  # the device that rate was measured on


@dataclass(frozen=True)
class Variant:
    """What prices a training: its network, batch and multiply-adds per image."""

    model: str
    batch_size: int
    gmacs: float


@dataclass
class GridPlan:
    name: str
    points: int
    seeds: int
    keys: list[str]


@dataclass(frozen=True)
class Packing:
    """Trainings costed in packs (senet.engine.pack_rules): up to ``size`` per pack, and
    a pack of n runs at ``min(n, gain)`` times one training's img/s: the assumption
    that ``senet plan --pack-gain`` states, until a packed rate is measured."""

    size: int
    gain: float


@dataclass
class Plan:
    grids: list[GridPlan]
    trainings: dict[str, Training]
    # By cost entry: the model name, or "model @ N GMACs" for a variant whose
    # multiply-adds differ from its network's by more than SAME_COST.
    throughput: dict[str, Throughput]
    images: dict[str, tuple[int, int]]  # (train, val) images per epoch, by key
    device: str  # the rows of senet/throughput.toml used where the store has no runs
    packing: Packing | None = None

    def counts(self, keys: Iterable[str] | None = None) -> dict[str, int]:
        keys = list(self.trainings) if keys is None else list(dict.fromkeys(keys))
        out = dict.fromkeys(STATES, 0)
        for key in keys:
            out[self.trainings[key].state] += 1
        return out

    def hours(self, key: str) -> float | None:
        """Projected device-hours of one training, or None without a throughput figure."""
        t = self.trainings[key]
        rate = self.throughput[t.cost].img_per_s
        if not rate:
            return None
        train, val = self.images[key]
        return t.resolved["epochs"] * (train + EVAL_COST * val) / rate / 3600

    def hours_left(self, keys: Iterable[str] | None = None) -> tuple[float, int]:
        """(device-hours of the trainings still to run, how many of them lack a figure);
        in packs when ``packing`` is set."""
        by_device, unknown = self.hours_by_device(keys)
        return sum(by_device.values()), unknown

    def hours_by_device(self, keys: Iterable[str] | None = None
                        ) -> tuple[dict[str, float], int]:
        """Device-hours still to run by the device their rates were measured on, and how
        many trainings lack a figure; in packs when ``packing`` is set."""
        keys = list(self.trainings) if keys is None else list(dict.fromkeys(keys))
        todo = [k for k in keys if self.trainings[k].state not in ("done", "running")]
        out: dict[str, float] = {}
        unknown = 0
        for group in self.packs(todo):
            hours = [self.hours(k) for k in group]
            if None in hours:
                unknown += len(group)
                continue
            # A pack takes as long as its slowest member would at the pack's rate.
            gain = min(len(group), self.packing.gain) if self.packing else 1.0
            slowest = group[hours.index(max(hours))]
            device = self.throughput[self.trainings[slowest].cost].device or "an unknown device"
            out[device] = out.get(device, 0.0) + max(hours) * len(group) / gain
        return out, unknown

    def hours_text(self, keys: Iterable[str] | None = None) -> str:
        """`≈ 2.5 device-hours on NVIDIA H200`, each device's share named where the rates
        come from several."""
        by_device, unknown = self.hours_by_device(keys)
        if not by_device:
            text = "≈ 0 device-hours"
        elif len(by_device) == 1:
            (device, hours), = by_device.items()
            text = f"≈ {format_hours(hours)} on {device}"
        else:
            parts = ", ".join(f"{format_hours(h)} on {d}" for d, h in sorted(by_device.items()))
            text = (f"≈ {format_hours(sum(by_device.values()))} at rates from several devices "
                    f"({parts})")
        if unknown:
            text += f" (+{unknown} without a throughput figure)"
        return text

    def packs(self, keys: list[str]) -> list[list[str]]:
        """``keys`` as the packs they would train in (one per training without packing)."""
        if self.packing is None or self.packing.size == 1:
            return [[k] for k in keys]
        from senet.engine.pack_rules import key_of_resolved, pack_groups

        pack_keys = [key_of_resolved(self.trainings[k].resolved, self.trainings[k].seed, {}, k)
                     for k in keys]
        return [[keys[i] for i in g] for g in pack_groups(pack_keys, self.packing.size)]

    def summary_line(self) -> str:
        c = self.counts()
        todo = c["queued"] + c["failed"] + c["new"]
        line = (f"{len(self.trainings)} unique trainings: {c['done']} done, {c['running']} "
                f"running, {c['queued']} queued, {c['failed'] + c['new']} not yet queued or "
                f"failed; {todo} to train {self.hours_text()}")
        if self.packing is not None:
            todo_keys = [k for k, t in self.trainings.items()
                         if t.state not in ("done", "running")]
            line += (f", in {len(self.packs(todo_keys))} packs of up to {self.packing.size} "
                     f"(assumed: a pack of n trains at min(n, {self.packing.gain:g}) x one "
                     "training's img/s)")
        return line

    def to_json(self) -> dict[str, Any]:
        grids = []
        for g in self.grids:
            hours, unknown = self.hours_left(g.keys)
            grids.append({"grid": g.name, "points": g.points, "seeds": g.seeds,
                          "slots": g.points * g.seeds, "unique": len(set(g.keys)),
                          **self.counts(g.keys), "device_hours_left": round(hours, 3),
                          "without_throughput": unknown})
        hours, unknown = self.hours_left()
        by_device, _ = self.hours_by_device()
        trainings = []
        for key, t in self.trainings.items():
            train, val = self.images[key]
            h = self.hours(key)
            trainings.append({
                "key": key, "model": t.model, "cost": t.cost, "seed": t.seed,
                "grids": t.grids, "state": t.state, "epochs": t.resolved["epochs"],
                "images_per_training": t.resolved["epochs"] * train,
                "val_images_per_epoch": val,
                "device_hours": None if h is None else round(h, 4),
            })
        return {
            "device": self.device,
            "total": {"unique": len(self.trainings), **self.counts(),
                      "device_hours_left": round(hours, 3), "without_throughput": unknown,
                      "device_hours_left_by_device": {d: round(h, 3)
                                                      for d, h in sorted(by_device.items())}},
            "grids": grids,
            "throughput": {m: {"img_per_s": t.img_per_s, "source": t.source,
                               "device": t.device}
                           for m, t in sorted(self.throughput.items())},
            "trainings": trainings,
        }


def make_plan(grids: list[Any], *, storage_url: str | None = None,
              tracking_uri: str | None = None, device: str = "NVIDIA H200",
              data_root: str | None = None, seeds: list[int] | None = None,
              packing: Packing | None = None) -> Plan:
    """Expand ``grids`` (senet.settings.grid.Grid objects) into unique trainings and cost
    them (in packs, with ``packing``)."""
    trainings: dict[str, Training] = {}
    resolved_cache: dict[str, dict[str, Any]] = {}
    grid_plans = []
    for grid in grids:
        keys = []
        grid_seeds = seeds if seeds is not None else grid.seeds
        for seed in grid_seeds:
            for point in grid.points:
                resolved = resolved_cache.get(point.id)
                if resolved is None:
                    resolved = resolved_cache[point.id] = resolved_settings(point.settings)
                key = key_of(resolved, seed)
                t = trainings.setdefault(key, Training(key, seed, point.settings, resolved))
                if grid.name not in t.grids:
                    t.grids.append(grid.name)
                keys.append(key)
        grid_plans.append(GridPlan(grid.name, len(grid.points), len(grid_seeds), keys))
    for key, state in _states_in_storage(storage_url).items():
        if key in trainings:
            trainings[key].state = state
    sizes: dict[tuple[str, int | None], tuple[int, int]] = {}
    images = {}
    for key, t in trainings.items():
        where = (t.resolved["dataset"], t.resolved["subset"])
        if where not in sizes:
            sizes[where] = dataset_sizes(*where, data_root=data_root)
        images[key] = sizes[where]
    throughput = measured_throughput(_price_entries(trainings.values()), tracking_uri, device)
    return Plan(grid_plans, trainings, throughput, images, device, packing)


def _price_entries(trainings: Iterable[Training]) -> dict[str, Variant]:
    """One entry per network, batch and cost; sets each training's ``cost`` to its entry.
    A variant within SAME_COST of its network's multiply-adds is priced as the network."""
    trainings = list(trainings)
    batches: dict[str, set[int]] = {}
    for t in trainings:
        batches.setdefault(t.model, set()).add(t.resolved["batch_size"])
    entries: dict[str, Variant] = {}
    for t in trainings:
        batch = t.resolved["batch_size"]
        gmacs = _gmacs(t.model, t.resolved["model_options"])
        default = _gmacs(t.model, {})
        name = t.model
        if abs(gmacs / default - 1) > SAME_COST:
            name += f" @ {gmacs:.2f} GMACs"
        else:
            gmacs = default
        if len(batches[t.model]) > 1:
            name += f", batch {batch}"
        t.cost = name
        entries[name] = Variant(t.model, batch, gmacs)
    return entries


def local_device() -> str:
    """This machine's device as the throughput table and the runs' tags name it: the first
    GPU's name, else cpu."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def format_hours(hours: float) -> str:
    """Device-hours to one decimal; below 0.1 h in device-minutes, so a small grid does not
    read as free."""
    if hours < 0.1:
        return f"{hours * 60:.1f} device-minutes"
    return f"{hours:.1f} device-hours"


# ---------------------------------------------------------------------------
# What each key's state is in the queue storage


def _states_in_storage(url: str | None) -> dict[str, str]:
    """key -> best state over every ticket of every grid in the storage."""
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage
    from senet.urls import resolve_storage

    given = url
    url = resolve_storage(url)
    if given is None and "://" not in url and not Path(url).is_file():
        return {}  # nothing queued here yet: a plan before queueing
    storage = open_storage(url, create=False)  # a --storage that does not exist: an error
    rank = {"done": 0, "running": 1, "queued": 2, "failed": 3}
    best: dict[str, str] = {}
    cache: dict[str, dict[str, Any]] = {}
    for queue in q.GridQueue.all(storage):
        for (point, seed), tickets in queue.slots().items():
            settings = tickets[0].settings
            try:
                resolved = cache.get(point) or cache.setdefault(point, resolved_settings(settings))
            except SenetError:
                continue  # a ticket of an older, no longer valid grid: not ours to plan
            key = key_of(resolved, seed)
            state = q.slot_state(tickets)
            if key not in best or rank[state] < rank[best[key]]:
                best[key] = state
    return best


# ---------------------------------------------------------------------------
# Images per epoch


def dataset_sizes(dataset: str, subset: int | None, *, data_root: str | None = None
                  ) -> tuple[int, int]:
    """(training images, validation images) one epoch sees."""
    if dataset == "builtin":
        from senet.data import builtin

        classes = len(builtin.CLASS_NAMES)
        train, val = (n * classes for n in builtin.per_class())
    elif dataset.startswith("folder:") or (dataset in KNOWN_SIZES and data_root):
        train, val = _count_tree(dataset, data_root)
    elif dataset in KNOWN_SIZES:
        train, val = KNOWN_SIZES[dataset]
    else:
        raise SenetError(f"unknown dataset {dataset!r}")
    return (min(train, subset) if subset else train), val


def _count_tree(dataset: str, data_root: str | None) -> tuple[int, int]:
    from senet.data.scan import scan_split, tree_splits

    if dataset != "imagenet" and not dataset.startswith("folder:"):
        return KNOWN_SIZES[dataset]  # CIFAR roots hold archives, not trees
    train_dir, val_dir = tree_splits(dataset, data_root)
    return len(scan_split(train_dir)), len(scan_split(val_dir))


# ---------------------------------------------------------------------------
# Throughput


def measured_throughput(variants: dict[str, Variant], tracking_uri: str | None,
                        device: str) -> dict[str, Throughput]:
    """img/s per cost entry: finished runs in the tracking store, else the benchmark table
    of ``device`` (the network's row, else the nearest measured network), scaled by
    multiply-adds wherever the variant's differ from the row's."""
    found = _from_tracking(variants, tracking_uri, device)
    table = [r for r in _table_rows() if r["device"] == device]
    return {name: found.get(name) or _from_table(v, table, device)
            for name, v in variants.items()}


def _from_tracking(variants: dict[str, Variant], uri: str | None,
                   device: str) -> dict[str, Throughput]:
    from senet.tracking import store as tracking
    from senet.urls import sqlite_path, with_driver

    uri = with_driver(tracking.resolve_uri(uri))
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        return {}  # no store here: never create one just to look
    from mlflow import MlflowClient

    try:
        client = MlflowClient(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
    except Exception:  # noqa: BLE001 - an unreachable store just means no measurements
        return {}
    out = {}
    for name, v in variants.items():
        query = tracking.tag_filter({"model": v.model, "batch_size": str(v.batch_size)},
                                    kind="params")
        runs = client.search_runs(
            experiments, f"attributes.status = 'FINISHED' and {query}", max_results=200)
        # Only runs of this variant (a NoSqueeze run must not price the SE network), and
        # of one device: the one asked for where there are any, else the most measured.
        runs = [r for r in runs if "img_per_s" in r.data.metrics
                and _same_cost(r.data.metrics.get("gmacs"), v.gmacs)]
        by_device: dict[str, list[float]] = {}
        for r in runs:
            by_device.setdefault(r.data.tags.get(tracking.TAG_DEVICE, "an unknown device"),
                                 []).append(r.data.metrics["img_per_s"])
        if not by_device:
            continue
        chosen = device if device in by_device else max(by_device, key=lambda d: len(by_device[d]))
        rates = by_device[chosen]
        out[name] = Throughput(statistics.median(rates),
                               f"median of {len(rates)} finished runs in the tracking store",
                               chosen)
    return out


def _same_cost(logged: float | None, gmacs: float) -> bool:
    """A run's logged GMACs agree with the variant's (runs that logged none count)."""
    return logged is None or abs(logged / gmacs - 1) <= SAME_COST


def _table_rows() -> list[dict[str, Any]]:
    return tomllib.loads(THROUGHPUT_TABLE.read_text()).get("row", [])


def _from_table(v: Variant, rows: list[dict[str, Any]], device: str) -> Throughput:
    """The network's own row, else the nearest row of the same family and SE-ness by
    multiply-adds; either scaled to the variant's multiply-adds. Time per image is taken
    as proportional to multiply-adds: activation memory and kernel launches are not
    modelled, so a row measured on a network of another shape can be off either way."""
    from senet.models import family

    own = next((r for r in rows if r["model"] == v.model), None)
    if own is None:
        fam, se = family(v.model), v.model.startswith("se_")
        peers = [r for r in rows if r["model"].startswith("se_") == se
                 and _safe_family(r["model"]) == fam]
        if not peers:
            return Throughput(None, f"no measurement for {v.model} on {device}: run it once "
                                    "(senet train prints img/s) or add a row to "
                                    "senet/throughput.toml")
        own = min(peers, key=lambda r: abs(math.log(_gmacs(r["model"], {}) / v.gmacs)))
    measured = _gmacs(own["model"], {})
    rate = float(own["img_per_s"]) * measured / v.gmacs
    note = "" if own["batch_size"] == v.batch_size else f", measured at batch {own['batch_size']}"
    source = f"senet/throughput.toml: {own['source']}{note}"
    if own["model"] != v.model:
        source = (f"extrapolated from {own['model']} by multiply-adds ({measured:.3f} -> "
                  f"{v.gmacs:.3f} GMACs); {source}")
    elif not _same_cost(measured, v.gmacs):
        source = f"scaled by multiply-adds ({measured:.3f} -> {v.gmacs:.3f} GMACs); {source}"
    return Throughput(rate, source, device)


def _safe_family(model: str) -> str | None:
    from senet.models import family

    try:
        return family(model)
    except SenetError:
        return None


@functools.cache
def _gmacs_of(model: str, options: tuple[tuple[str, Any], ...]) -> float:
    import torch

    from senet.models import build, family
    from senet.models.flops import count

    # The meta device gives the shapes without drawing a single weight.
    with torch.device("meta"):
        net = build(model, **dict(options))
    return count(net, 224 if family(model) == "imagenet" else 32).gmacs


def _gmacs(model: str, options: dict[str, Any]) -> float:
    """Multiply-adds per image of ``model`` with ``options``, at the family's input size."""
    return _gmacs_of(model, tuple(sorted((k, v) for k, v in options.items()
                                         if k != "num_classes")))
