"""What a grid expects to exist: its points, seeds, baseline and paper table.

Built from the grid file through senet.grid when there is one; otherwise reconstructed
from the runs found in MLflow (then the expected seeds are only those seen).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from analysis.paper import Claim, parse_claim
from senet.errors import SenetError


@dataclass(frozen=True)
class PointSpec:
    point_id: str
    label: str
    settings: dict[str, Any]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class GridSpec:
    name: str
    title: str
    points: tuple[PointSpec, ...]
    paper_table: str | None = None
    baseline: str | None = None  # point id the differences are taken against
    dataset: str | None = None
    from_file: bool = True
    claims: tuple[Claim, ...] = ()  # the grid's own claims, rows named by point label
    claim_tables: tuple[dict[str, Any], ...] = ()  # the same, as the file writes them
    path: Any = None  # the grid file, when there is one
    adaptive: Any = None  # senet.settings.grid.AdaptiveSeeds for `seeds = { min, max }`
    # training key -> (point id, seed, label) of the grid file; None without a file. A
    # grid's runs are found by these keys, whichever grid's ticket trained them.
    slots: dict[str, tuple[str, int, str]] | None = None

    @property
    def baseline_point(self) -> PointSpec:
        return next((p for p in self.points if p.point_id == self.baseline), self.points[0])

    @property
    def axis(self) -> str | None:
        """The one setting that varies between points, if there is exactly one."""
        keys = sorted({k for p in self.points for k in p.settings})
        varied = [k for k in keys if len({repr(p.settings.get(k)) for p in self.points}) > 1]
        return varied[0] if len(varied) == 1 else None

    @property
    def short_name(self) -> str:
        """The part after the dataset folder: `cifar10/reduction` -> `reduction`."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        """Output folder under --out: the grid's whole name (`cifar10/reduction`, `demo`).
        Checked again here: a name read back from MLflow tags never leaves --out."""
        from senet.settings.grid import name_problem

        problem = name_problem(self.name)
        if problem:
            raise SenetError(f"grid name {self.name!r}: {problem}; its tables and figures "
                             "would be written outside the output folder")
        return self.name


def _single(values: list[Any]) -> Any:
    distinct = {str(v) for v in values if v is not None and str(v) != "nan"}
    return distinct.pop() if len(distinct) == 1 else None


def _baseline_of(grid: Any) -> str | None:
    # The grid file may mark its baseline (by point id or label) on the grid or a point;
    # without a mark the first row is the baseline, as in the paper's tables.
    mark = getattr(grid, "baseline", None)
    for p in grid.points:
        if getattr(p, "baseline", False) is True or mark in (p.id, p.label):
            return p.id
    return grid.points[0].id if grid.points else None


def _grid_claims(grid: Any) -> tuple[Claim, ...]:
    """`claims = [...]` of the grid file: what its rows should show, judged under its table."""
    path = getattr(grid, "path", None)
    data = getattr(grid, "claims", [])  # read by senet.settings.grid with the rest
    claims = tuple(parse_claim(c, f"{path}: claims") for c in data)
    labels = {p.label for p in grid.points}
    for c in claims:
        for label in (c.row, c.ref):
            if label not in labels:
                raise SenetError(f"{path}: claim {c.text!r} names no point {label!r}")
    return claims


def from_grid(grid: Any) -> GridSpec:
    """Adapt a senet.settings.grid.Grid."""
    points = tuple(
        PointSpec(p.id, p.label, dict(p.settings), tuple(getattr(p, "seeds", None) or grid.seeds))
        for p in grid.points
    )
    return GridSpec(
        name=grid.name,
        title=grid.title or grid.name,
        points=points,
        paper_table=grid.paper_table,
        baseline=_baseline_of(grid),
        dataset=_single([p.settings.get("dataset") for p in points]),
        claims=_grid_claims(grid),
        claim_tables=tuple(getattr(grid, "claims", [])),
        path=getattr(grid, "path", None),
        adaptive=getattr(grid, "adaptive", None),
        slots=_slots(grid),
    )


def _slots(grid: Any) -> dict[str, tuple[str, int, str]] | None:
    from senet.queue.tickets import grid_keys

    try:
        keys = grid_keys(grid, grid.seeds)
    except (SenetError, AttributeError):
        return None  # not a grid file's Grid (a test's stand-in): the tags decide
    labels = {p.id: p.label for p in grid.points}
    return {key: (point, seed, labels[point]) for (point, seed), key in keys.items()}


def with_seeds_run(spec: GridSpec, runs: pd.DataFrame) -> GridSpec:
    """An adaptive grid expects the seeds the queue has added so far: the first min of
    each point plus those of its runs below max."""
    if spec.adaptive is None or runs.empty:
        return spec
    points = []
    for p in spec.points:
        seen = {int(s) for s in runs.loc[runs["point"] == p.point_id, "seed"]}
        extra = {s for s in seen if s < spec.adaptive.max}
        points.append(replace(p, seeds=tuple(sorted(set(p.seeds) | extra))))
    return replace(spec, points=tuple(points))


def from_runs(name: str, runs: pd.DataFrame) -> GridSpec:
    """A grid with no file: points, labels and seeds as they appear in its runs."""
    points = []
    # Points in the order their first run started, the closest thing to a file's order.
    order = runs.groupby("point")["start_time"].min().sort_values(kind="stable").index
    for point_id in order:
        group = runs[runs["point"] == point_id]
        params = {
            c.removeprefix("param."): _single(group[c].tolist())
            for c in group.columns
            if c.startswith("param.")
        }
        settings = {k: v for k, v in params.items() if v is not None and k != "seed"}
        label = _single(group["label"].tolist()) or str(point_id)
        seeds = tuple(sorted({int(s) for s in group["seed"]}))
        points.append(PointSpec(str(point_id), label, settings, seeds))
    dataset = _single([p.settings.get("dataset") for p in points])
    return GridSpec(
        name=name,
        title=name,
        points=tuple(points),
        baseline=points[0].point_id,
        dataset=dataset,
        from_file=False,
    )


def load_spec(spec: str, runs_for: Callable[[str], pd.DataFrame] | None = None,
              recorded_file: Callable[[str], str | None] | None = None) -> GridSpec:
    """The grid named or located by ``spec``. ``recorded_file(name)`` gives the file a
    queued grid was queued from (a grid declared with `name =` outside experiments/);
    ``runs_for(name)`` supplies runs for grids that have no file (e.g. one since deleted);
    a name with neither file nor runs is an error."""
    from senet.settings.grid import load_grid, resolve_grid_path, split_protocol

    try:
        resolve_grid_path(split_protocol(spec)[0])
    except SenetError:
        name = spec.removesuffix(".toml")
        found = recorded_file(name) if recorded_file is not None else None
        if found is not None:
            grid = load_grid(found)
            if grid.name == name:
                return from_grid(grid)
        runs = runs_for(name) if runs_for is not None else None
        if runs is None or runs.empty:
            raise  # the grid module's message lists the grids there are
        return from_runs(name, runs)
    found = from_grid(load_grid(spec))
    if found.adaptive is not None and runs_for is not None:
        found = with_seeds_run(found, runs_for(found.name))
    return found
