"""`senet plan`: what a set of grids will cost before any device time is spent.

Grids are expanded to trainings, trainings are reduced to unique keys (see
senet.settings.identity), keys already done, running or queued in the storage are counted,
and the rest is projected to device-hours from measured throughput: finished runs in
the tracking store first (they log img/s), then the table in senet/throughput.toml.
"""

from __future__ import annotations

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


@dataclass
class Training:
    key: str
    seed: int
    settings: dict[str, Any]
    resolved: dict[str, Any]
    grids: list[str] = field(default_factory=list)
    state: str = "new"

    @property
    def model(self) -> str:
        return self.settings["model"]


@dataclass
class Throughput:
    img_per_s: float | None
    source: str  # where the figure came from, in words


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
    throughput: dict[str, Throughput]  # by model
    images: dict[str, tuple[int, int]]  # (train, val) images per epoch, by key
    device: str
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
        rate = self.throughput[t.model].img_per_s
        if not rate:
            return None
        train, val = self.images[key]
        return t.resolved["epochs"] * (train + EVAL_COST * val) / rate / 3600

    def hours_left(self, keys: Iterable[str] | None = None) -> tuple[float, int]:
        """(device-hours of the trainings still to run, how many of them lack a figure);
        in packs when ``packing`` is set."""
        keys = list(self.trainings) if keys is None else list(dict.fromkeys(keys))
        todo = [k for k in keys if self.trainings[k].state not in ("done", "running")]
        total, unknown = 0.0, 0
        for group in self.packs(todo):
            hours = [self.hours(k) for k in group]
            if None in hours:
                unknown += len(group)
                continue
            # A pack takes as long as its slowest member would at the pack's rate.
            gain = min(len(group), self.packing.gain) if self.packing else 1.0
            total += max(hours) * len(group) / gain
        return total, unknown

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
        hours, unknown = self.hours_left()
        todo = c["queued"] + c["failed"] + c["new"]
        line = (f"{len(self.trainings)} unique trainings: {c['done']} done, {c['running']} "
                f"running, {c['queued']} queued, {c['failed'] + c['new']} not yet queued or "
                f"failed; {todo} to train ≈ {hours:.1f} device-hours on {self.device}")
        if unknown:
            line += f" (+{unknown} without a throughput figure)"
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
        trainings = []
        for key, t in self.trainings.items():
            train, val = self.images[key]
            h = self.hours(key)
            trainings.append({
                "key": key, "model": t.model, "seed": t.seed, "grids": t.grids,
                "state": t.state, "epochs": t.resolved["epochs"],
                "images_per_training": t.resolved["epochs"] * train,
                "val_images_per_epoch": val,
                "device_hours": None if h is None else round(h, 4),
            })
        return {
            "device": self.device,
            "total": {"unique": len(self.trainings), **self.counts(),
                      "device_hours_left": round(hours, 3), "without_throughput": unknown},
            "grids": grids,
            "throughput": {m: {"img_per_s": t.img_per_s, "source": t.source}
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
    models = {t.model: t.resolved["batch_size"] for t in trainings.values()}
    throughput = measured_throughput(models, tracking_uri, device)
    return Plan(grid_plans, trainings, throughput, images, device, packing)


# ---------------------------------------------------------------------------
# What each key's state is in the queue storage


def _states_in_storage(url: str | None) -> dict[str, str]:
    """key -> best state over every ticket of every grid in the storage."""
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage, resolve_storage

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


def measured_throughput(models: dict[str, int], tracking_uri: str | None,
                        device: str) -> dict[str, Throughput]:
    """img/s per model: finished runs in the tracking store, else the benchmark table
    (exact row, else extrapolated from the same family's rows)."""
    found = _from_tracking(models, tracking_uri)
    table = [r for r in _table_rows() if r["device"] == device]
    out = {}
    for model, batch in models.items():
        if model in found:
            out[model] = found[model]
        else:
            out[model] = _from_table(model, batch, table, device)
    return out


def _from_tracking(models: dict[str, int], uri: str | None) -> dict[str, Throughput]:
    from senet.queue.storage import sqlite_path, with_driver
    from senet.tracking import store as tracking

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
    for model, batch in models.items():
        query = tracking.tag_filter({"model": model, "batch_size": str(batch)}, kind="params")
        runs = client.search_runs(
            experiments, f"attributes.status = 'FINISHED' and {query}", max_results=200)
        rates = [r.data.metrics["img_per_s"] for r in runs if "img_per_s" in r.data.metrics]
        if rates:
            devices = sorted({r.data.tags.get("senet.device", "?") for r in runs})
            out[model] = Throughput(statistics.median(rates),
                                    f"median of {len(rates)} finished runs in the tracking "
                                    f"store ({', '.join(devices)})")
    return out


def _table_rows() -> list[dict[str, Any]]:
    return tomllib.loads(THROUGHPUT_TABLE.read_text()).get("row", [])


def _from_table(model: str, batch: int, rows: list[dict[str, Any]], device: str
                ) -> Throughput:
    for row in rows:
        if row["model"] == model:
            note = "" if row["batch_size"] == batch else f", measured at batch {row['batch_size']}"
            return Throughput(float(row["img_per_s"]),
                              f"benchmark table senet/throughput.toml ({row['source']}{note})")
    # Extrapolate from the same family and SE-ness. Small CIFAR nets are bound by the host
    # launching kernels, so time per image scales with the number of layers; ImageNet
    # nets are bound by arithmetic, so it scales with multiply-adds.
    from senet.models import family

    fam = family(model)
    se = model.startswith("se_")
    peers = [r for r in rows if r["model"].startswith("se_") == se
             and _safe_family(r["model"]) == fam]
    if not peers:
        return Throughput(None, f"no measurement for {model} on {device}: run it once "
                                "(senet train prints img/s) or add a row to senet/throughput.toml")
    cost = _layer_count if fam == "cifar" else _gmacs
    target = cost(model)
    best = min(peers, key=lambda r: abs(cost(r["model"]) - target))
    rate = float(best["img_per_s"]) * cost(best["model"]) / target
    what = "layers" if fam == "cifar" else "GMACs"
    return Throughput(rate, f"extrapolated from {best['model']} on {device} by {what}")


def _safe_family(model: str) -> str | None:
    from senet.models import family

    try:
        return family(model)
    except SenetError:
        return None


def _layer_count(model: str) -> float:
    """Leaf modules with parameters or activations: a proxy for kernel launches."""
    from senet.models import build

    return float(sum(1 for m in build(model).modules() if not list(m.children())))


def _gmacs(model: str) -> float:
    from senet.models import build
    from senet.models.flops import count

    return count(build(model), 224).gmacs
