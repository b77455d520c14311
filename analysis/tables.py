"""One results table per grid: our seeds' statistics beside the paper's numbers.

Every expected (point, seed) is accounted for: finished seeds enter the statistics,
the others are listed in the row's status (failed with reason, running, queued, no run).
Differences are taken against a reference row with a 95% Welch t interval over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.gridspec import GridSpec, PointSpec
from analysis.paper import PaperBook, PaperRow, PaperTable, dataset_family
from analysis.seed_report import adaptive_lines
from analysis.stats import Interval, Summary, summarize, welch_interval
from analysis.verdicts import Side, verdicts
from senet.errors import SenetError

METRICS = {
    "final": ("metric.final_val_top1_err", "metric.final_val_top5_err"),
    "best": ("metric.best_val_top1_err", "metric.best_val_top5_err"),
}
# Which run stands for a (point, seed) when there are several: a finished one first.
_STATUS_RANK = {"FINISHED": 0, "RUNNING": 1, "FAILED": 2}

# Marks for whether the paper's direction (vs its reference row) reproduces.
REPRODUCED = "✓"
SAME_SIGN_NS = "(✓)"
OPPOSITE = "✗"
OPPOSITE_NS = "(✗)"
NOT_COMPARABLE = "—"
MARK_LEGEND = (
    f"{REPRODUCED} same direction as the paper and the 95% CI excludes 0; "
    f"{SAME_SIGN_NS} same direction, CI includes 0 (or fewer than 2 seeds); "
    f"{OPPOSITE} opposite direction, CI excludes 0; {OPPOSITE_NS} opposite direction, "
    f"CI includes 0; {NOT_COMPARABLE} nothing to compare"
)

# A queue lookup: (point id, seed) -> (state, reason) for seeds without a finished MLflow
# run, e.g. ("queued", "") or ("failed", "CUDA out of memory"); None when it does not know.
QueueStatus = Callable[[str, int], tuple[str, str] | None]


@dataclass
class GridTable:
    """The built table: ``rows`` one per point, ``seeds`` one per expected (point, seed)."""

    spec: GridSpec
    metric: str
    rows: pd.DataFrame
    seeds: pd.DataFrame
    paper: PaperTable | None
    paper_note: str
    citation: str
    notes: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # one line per claim, in words
    # Paper rows no grid point trains (footnote 2's baselines), shown after ``rows``.
    paper_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    num_classes: int | None = None  # None: unknown

    @property
    def shows_top5(self) -> bool:
        """Top-5 error says something only with more than 10 classes (it is 0 with 5 or
        fewer, and near 0 with 10)."""
        return self.num_classes is None or self.num_classes > 10


def _pick_run(runs: pd.DataFrame) -> pd.Series:
    rank = runs["status"].map(_STATUS_RANK).fillna(len(_STATUS_RANK))
    recent = runs["end_time"].fillna(runs["start_time"]).fillna(0)
    order = pd.DataFrame({"rank": rank, "recent": -recent}).sort_values(["rank", "recent"])
    return runs.loc[order.index[0]]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _seed_table(
    spec: GridSpec, runs: pd.DataFrame, metric: str, queue: QueueStatus | None
) -> pd.DataFrame:
    top1_col, top5_col = METRICS[metric]
    rows = []
    for point in spec.points:
        mine = runs[runs["point"] == point.point_id]
        for seed in point.seeds:
            tried = mine[mine["seed"] == seed]
            row: dict[str, Any] = {
                "point": point.point_id, "label": point.label, "seed": seed,
                "attempts": len(tried), "run_id": "", "reason": "",
                "top1": math.nan, "top5": math.nan, "gmacs": math.nan, "params": math.nan,
            }  # fmt: skip
            run = _pick_run(tried) if len(tried) else None
            if run is not None:
                row["run_id"] = run["run_id"]
                row["state"] = str(run["status"]).lower()
                row["reason"] = str(run.get("fail_reason") or "")
                for key, col in (
                    ("top1", top1_col), ("top5", top5_col),
                    ("gmacs", "metric.gmacs"), ("params", "metric.params"),
                ):  # fmt: skip
                    row[key] = _number(run.get(col))
            # The queue knows about seeds MLflow cannot: queued, or failed before a run
            # was created, or a worker lost while its MLflow run still says RUNNING.
            finished = row.get("state") == "finished"
            known = queue(point.point_id, seed) if queue and not finished else None
            if known is not None:
                before = row.get("state")
                row["state"], reason = known
                if not reason and before == "failed" and row["state"] != "failed":
                    reason = f"last run failed: {row['reason'] or 'no reason recorded'}"
                row["reason"] = reason or row["reason"]
            elif run is None:
                row["state"] = "no run"
            rows.append(row)
    columns = ["point", "label", "seed", "state", "reason", "attempts", "run_id",
               "top1", "top5", "gmacs", "params"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _status_text(seeds: pd.DataFrame, metric_name: str) -> str:
    """Unfinished seeds grouped by what happened: "seeds 1, 2 queued; seed 0 failed: ..."."""
    groups: dict[str, list[int]] = {}
    for s in seeds.itertuples():
        if s.state == "finished" and math.isnan(s.top1):
            what = f"finished without {metric_name}"
        elif s.state == "failed":
            what = f"failed: {s.reason or 'no reason recorded'}"
        elif s.state != "finished":
            what = s.state + (f": {s.reason}" if s.reason else "")
        else:
            continue
        groups.setdefault(what, []).append(int(s.seed))
    parts = [
        f"seed{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} {what}"
        for what, ids in groups.items()
    ]
    return "; ".join(parts) if parts else "complete"


def _mark(paper_diff: float | None, ours: float, ci: Interval | None) -> str:
    if paper_diff is None or paper_diff == 0 or math.isnan(ours):
        return NOT_COMPARABLE
    same = (ours > 0) == (paper_diff > 0) and ours != 0
    significant = ci is not None and ci.excludes_zero()
    if same:
        return REPRODUCED if significant else SAME_SIGN_NS
    return OPPOSITE if significant else OPPOSITE_NS


def _resolved_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The model options a point trains with, defaults included (e.g. placement=standard
    for a row that only sets the model), so it matches its paper row before any run exists."""
    from senet.models import OPTION_NAMES as MODEL_OPTION_KEYS
    from senet.models import validate_options

    model = settings.get("model")
    if not isinstance(model, str):
        return {}
    try:
        return validate_options(model, {k: settings[k] for k in MODEL_OPTION_KEYS if k in settings})
    except SenetError:
        return {}


def _match_settings(point: PointSpec, runs: pd.DataFrame) -> dict[str, Any]:
    """Grid settings over resolved defaults over what the runs logged as params."""
    mine = runs[runs["point"] == point.point_id] if not runs.empty else runs
    params: dict[str, Any] = {}
    if not mine.empty:
        first = mine.iloc[0]
        params = {
            c.removeprefix("param."): first[c]
            for c in mine.columns
            if c.startswith("param.") and isinstance(first[c], str)
        }
    return {**params, **_resolved_options(point.settings), **point.settings}


def _paper_value(row: PaperRow | None, key: str) -> float | None:
    return getattr(row, key) if row is not None else None


def _compare(
    key: str, ours: Summary, ref: Summary, row: PaperRow | None, paper_ref: PaperRow | None
) -> dict[str, Any]:
    """Our difference from the reference row with its CI, the paper's, and the mark."""
    ci = welch_interval(ours, ref)
    diff = ours.mean - ref.mean
    p_row, p_ref = _paper_value(row, key), _paper_value(paper_ref, key)
    paper_diff = None if p_row is None or p_ref is None else round(p_row - p_ref, 4)
    return {
        f"d_{key}": diff,
        f"d_{key}_low": ci.low if ci else math.nan,
        f"d_{key}_high": ci.high if ci else math.nan,
        f"paper_d_{key}": paper_diff,
        f"repro_{key}": _mark(paper_diff, diff, ci),
    }


def _reference_cells(key: str) -> dict[str, Any]:
    nan = math.nan
    return {f"d_{key}": nan, f"d_{key}_low": nan, f"d_{key}_high": nan,
            f"paper_d_{key}": None, f"repro_{key}": NOT_COMPARABLE}  # fmt: skip


_KNOWN_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}


def _num_classes(spec: GridSpec, runs: pd.DataFrame) -> int | None:
    """Classes of the grid's data: as its runs logged them, else known by dataset name."""
    if "param.num_classes" in runs.columns:
        logged = pd.to_numeric(runs["param.num_classes"], errors="coerce").dropna()
        if len(logged):
            return int(logged.max())
    family = dataset_family(spec.dataset)
    return _KNOWN_CLASSES.get(family or "")


def _paper_only_row(prow: PaperRow) -> dict[str, Any]:
    """A paper row that no grid point trains (e.g. footnote 2's baselines): its numbers
    alone, so the reader sees them beside ours."""
    nan = math.nan
    row: dict[str, Any] = {
        "point": "", "label": f"paper: {prow.label}", "is_baseline": False, "reference": "",
        "n": 0, "n_expected": 0, "top1_mean": nan, "top1_std": nan, "top5_mean": nan,
        "top5_std": nan, "gmacs": nan, "params": nan, "paper_label": prow.label,
        "paper_top1": prow.top1, "paper_top5": prow.top5, "paper_gflops": prow.gflops,
        "paper_params_m": prow.params_m, "status": "paper only",
    }  # fmt: skip
    for key in ("top1", "top5"):
        row.update(_reference_cells(key))
    return row


def _table_verdicts(
    spec: GridSpec,
    paper: PaperTable | None,
    finished: pd.DataFrame,
    matched: dict[str, PaperRow | None],
) -> list[str]:
    """The paper's claims (rows by paper row id) and the grid's own (rows by label)."""
    labels = {p.point_id: p.label for p in spec.points}
    by_paper_row = {r.id: pid for pid, r in reversed(matched.items()) if r is not None}

    def side(point_id: str | None, metric: str) -> Side | None:
        if point_id is None:
            return None
        values = finished.loc[finished["point"] == point_id, metric].dropna().tolist()
        return Side(labels[point_id], values, _paper_value(matched[point_id], metric))

    lines = []
    if paper is not None:
        lines += verdicts(paper.claims, lambda rid, m: side(by_paper_row.get(rid), m),
                          spec.dataset)
    by_label = {p.label: p.point_id for p in spec.points}
    lines += verdicts(spec.claims, lambda label, m: side(by_label.get(label), m), spec.dataset)
    return lines


def build_table(
    spec: GridSpec,
    runs: pd.DataFrame,
    book: PaperBook,
    metric: str = "final",
    queue: QueueStatus | None = None,
) -> GridTable:
    """Summarise ``runs`` (from analysis.runs.fetch_runs) for ``spec``'s expected points."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    paper, paper_note = book.lookup(spec.paper_table, spec.dataset)
    seeds = _seed_table(spec, runs, metric, queue)
    metric_name = METRICS[metric][0].removeprefix("metric.")
    baseline = spec.baseline_point.point_id

    matched = {
        p.point_id: paper.match(_match_settings(p, runs)) if paper else None for p in spec.points
    }
    by_paper_row = {r.id: pid for pid, r in reversed(matched.items()) if r is not None}
    finished = seeds[seeds["state"] == "finished"]
    summaries = {
        p.point_id: {
            key: summarize(finished.loc[finished["point"] == p.point_id, key])
            for key in ("top1", "top5")
        }
        for p in spec.points
    }
    labels = {p.point_id: p.label for p in spec.points}

    rows = []
    for p in spec.points:
        mine = seeds[seeds["point"] == p.point_id]
        done = mine[mine["state"] == "finished"]
        prow = matched[p.point_id]
        # SE rows of the CIFAR tables are read against their own original network.
        ref_id = by_paper_row.get(prow.vs, baseline) if prow is not None and prow.vs else baseline
        ours = summaries[p.point_id]
        row: dict[str, Any] = {
            "point": p.point_id,
            "label": p.label,
            "is_baseline": p.point_id == baseline,
            "reference": labels[ref_id],
            "n": ours["top1"].n,
            "n_expected": len(p.seeds),
            "top1_mean": ours["top1"].mean, "top1_std": ours["top1"].std,
            "top5_mean": ours["top5"].mean, "top5_std": ours["top5"].std,
            "gmacs": (done if len(done) else mine)["gmacs"].median(),
            "params": (done if len(done) else mine)["params"].median(),
            "paper_label": prow.label if prow else "",
            "paper_top1": _paper_value(prow, "top1"),
            "paper_top5": _paper_value(prow, "top5"),
            "paper_gflops": _paper_value(prow, "gflops"),
            "paper_params_m": _paper_value(prow, "params_m"),
        }  # fmt: skip
        for key in ("top1", "top5"):
            if ref_id == p.point_id:
                row.update(_reference_cells(key))
            else:
                ref = summaries[ref_id][key]
                row.update(_compare(key, ours[key], ref, prow, matched[ref_id]))
        row["status"] = _status_text(mine, metric_name)
        rows.append(row)
    table = GridTable(
        spec=spec,
        metric=metric,
        rows=pd.DataFrame(rows),
        seeds=seeds,
        paper=paper,
        paper_note=paper_note,
        citation=book.citation,
    )
    if paper is not None:
        table.paper_rows = pd.DataFrame([_paper_only_row(r) for r in paper.rows if r.paper_only])
    table.notes = _notes(spec, runs, seeds, paper, matched, paper_note)
    table.verdicts = _table_verdicts(spec, paper, finished, matched)
    table.num_classes = _num_classes(spec, runs)
    if spec.adaptive is not None:  # how adaptive seeds stand: senet.queue.sequential
        table.verdicts += adaptive_lines(spec, paper, finished, by_paper_row, runs)
    return table


def _notes(
    spec: GridSpec,
    runs: pd.DataFrame,
    seeds: pd.DataFrame,
    paper: PaperTable | None,
    matched: dict[str, PaperRow | None],
    paper_note: str = "",
) -> list[str]:
    """What the table cannot show in its cells, so nothing found in MLflow goes unmentioned."""
    notes = []
    if not spec.from_file:
        notes.append(
            "No grid file found: points and seeds are those seen in MLflow, "
            "so seeds never started cannot be counted as missing."
        )
    expected = {(p.point_id, s) for p in spec.points for s in p.seeds}
    known_points = {p.point_id for p in spec.points}
    if not runs.empty:
        extra = runs[~runs["point"].isin(known_points)]
        for point_id, group in extra.groupby("point"):
            label = group["label"].iloc[0] or point_id
            notes.append(
                f"{len(group)} run(s) of point {point_id} ({label}) are not in the grid "
                "file (edited since?) and are left out."
            )
        stray = runs[runs["point"].isin(known_points)]
        pairs = zip(stray["point"], stray["seed"], strict=True)
        stray = stray[[pair not in expected for pair in pairs]]
        for (point_id, seed), _ in stray.groupby(["point", "seed"]):
            label = next(p.label for p in spec.points if p.point_id == point_id)
            notes.append(f"{label}: seed {seed} is not among the grid's seeds and is left out.")
    for s in seeds[seeds["attempts"] > 1].itertuples():
        notes.append(
            f"{s.label}, seed {s.seed}: {s.attempts} runs in MLflow; the {s.state} one "
            f"({s.run_id[:8]}) is used."
        )
    for label, column in (("GMACs", "gmacs"), ("params", "params")):
        spread = seeds[seeds["state"] == "finished"].groupby("label")[column].nunique()
        for name in spread[spread > 1].index:
            notes.append(f"{name}: {label} differ between seeds; the median is shown.")
    if spec.paper_table and (paper is None or not paper.has_numbers):
        why = paper_note or f"{paper.table} has no numbers in analysis/paper_numbers.toml"
        notes.append(
            f"paper_table = {spec.paper_table!r} names a table with no numbers to compare "
            f"with here: {why}."
        )
    if paper is not None:
        missing = [p.label for p in spec.points if matched[p.point_id] is None]
        if missing:
            notes.append(f"No paper row for: {', '.join(missing)}.")
    return notes
