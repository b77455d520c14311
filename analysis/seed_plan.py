"""`senet plan --seeds`: how many seeds each claim of a grid needs, and what they cost.

For each claim (analysis.claim_points) the seeds per row are those that decide it with
the stated power at its expected effect, for a fixed design (a paired t-test of the
per-seed differences at the end) and for adaptive seeds (senet.queue.sequential: the
max that reaches the power, and the mean seeds it stops at). The seed-to-seed standard
deviation is pooled from finished runs in the tracking store of the claim's models on
its dataset, else a default per dataset, printed with its source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from scipy import stats as st

from analysis.claim_points import PointClaim
from analysis.stats import DEFAULT_SEED_STD, SeedStd
from senet.queue import sequential as seq
from senet.settings.grid import MAX_ADAPTIVE_SEEDS

EXECUTION_PARAMS = {"seed", "compile", "step_path", "world_size", "workers", "amp_bf16"}
SIMULATIONS = 4000  # simulated grids per candidate max: power within about ±0.01


@dataclass
class ClaimSeeds:
    claim: PointClaim
    effect: float | None  # what the claim is planned for; None: cannot be planned
    effect_from: str
    std: SeedStd
    fixed: int | None = None  # seeds per row, fixed design; None: more than the cap
    max_seeds: int | None = None  # adaptive max reaching the power; None: over the cap
    mean_at_effect: float | None = None
    mean_at_zero: float | None = None
    hours_per_seed: float | None = None  # both rows' trainings for one seed


@dataclass
class GridSeeds:
    grid: Any
    claims: list[ClaimSeeds]
    notes: list[str]
    hours: dict[str, float | None]  # device-hours of one training, by point id
    alpha: float
    power: float
    min_seeds: int
    per_point: dict[str, tuple[int, int]] = field(default_factory=dict)  # fixed, max


# ---------------------------------------------------------------------------
# Seed noise


def pooled_std(runs: Iterable[Any], metric: str) -> tuple[float, int, int] | None:
    """(pooled std, finished runs, points) over groups of runs that differ only in seed,
    from the groups with at least two; None when there is none."""
    groups: dict[tuple, list[float]] = {}
    for run in runs:
        value = run.data.metrics.get(f"final_val_{metric}_err")
        if value is None or not math.isfinite(value):
            continue
        key = tuple(sorted((k, v) for k, v in run.data.params.items()
                           if k not in EXECUTION_PARAMS))
        groups.setdefault(key, []).append(float(value))
    used = [g for g in groups.values() if len(g) >= 2]
    if not used:
        return None
    squares = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in used)
    df = sum(len(g) - 1 for g in used)
    return math.sqrt(squares / df), sum(len(g) for g in used), len(used)


def finished_runs(tracking_uri: str | None, models: Iterable[str], dataset: str) -> list[Any]:
    """Finished runs of ``models`` on ``dataset`` in the tracking store ([] without one;
    a local store that does not exist is not created)."""
    from senet.tracking import store as tracking
    from senet.urls import sqlite_path

    uri = tracking.resolve_uri(tracking_uri)
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        return []
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = []
    for model in sorted(set(models)):
        query = tracking.tag_filter({"model": model, "dataset": dataset}, kind="params")
        runs += client.search_runs(experiments, f"attributes.status = 'FINISHED' and {query}",
                                   max_results=5000)
    return runs


def seed_std(runs: list[Any], dataset: str, metric: str) -> SeedStd | None:
    """Pooled from ``runs`` when they have repeated seeds, else the dataset's default."""
    pooled = pooled_std(runs, metric)
    if pooled is not None:
        value, n, points = pooled
        return SeedStd(value, f"pooled from {n} finished runs of {points} points in the "
                              "tracking store")
    default = DEFAULT_SEED_STD.get((dataset, metric))
    if default is None:
        return None
    return SeedStd(default.value, f"default for {dataset} ({default.source}); no repeated "
                                  "seeds in the tracking store")


# ---------------------------------------------------------------------------
# Seeds needed


def fixed_seeds(rule: seq.Claimed, effect: float, std: float, alpha: float, power: float
                ) -> int | None:
    """Seeds per row for a fixed design: the final look's paired t-test of the per-seed
    differences (std of a difference std * sqrt 2) decides for with ``power``."""
    sd = std * math.sqrt(2.0)
    for n in range(2, MAX_ADAPTIVE_SEEDS + 1):
        crit = st.t.isf(alpha / 2, n - 1)
        if rule.kind == "similar_to":  # both bounds inside the margin: no closed form
            chance = seq.simulate(seq.Design(n, n, alpha), rule, 0.0, std,
                                  sims=SIMULATIONS).p_for
        elif rule.kind == "within":  # planned at no true difference
            chance = st.nct.cdf(-crit, n - 1, -rule.margin * math.sqrt(n) / sd)
        else:
            chance = st.nct.sf(crit, n - 1, abs(effect) * math.sqrt(n) / sd)
        if chance >= power:
            return n
    return None


@lru_cache(maxsize=256)
def adaptive_seeds(rule: seq.Claimed, true_diff: float, std: float, min_seeds: int,
                   alpha: float, power: float, start: int
                   ) -> tuple[int, float, float] | None:
    """(max, mean seeds at ``true_diff``, mean seeds at no difference) of the smallest
    adaptive design that decides for with ``power``; None above the cap."""
    for top in range(max(min_seeds, start), MAX_ADAPTIVE_SEEDS + 1):
        design = seq.Design(min_seeds, top, alpha)
        at = seq.simulate(design, rule, true_diff, std, sims=SIMULATIONS)
        if at.p_for >= power:
            zero = seq.simulate(design, rule, 0.0, std, sims=SIMULATIONS, seed=1)
            return top, at.mean_seeds, zero.mean_seeds
    return None


def plan_claim(claim: PointClaim, std: SeedStd, *, effect: float | None, alpha: float,
               power: float, min_seeds: int) -> ClaimSeeds:
    """The seeds ``claim`` needs; ``effect`` (the user's) replaces the claim's own."""
    c = claim.claim
    if effect is not None:
        planned, where = effect, "given with --effect"
    elif claim.effect is not None:
        planned, where = claim.effect, claim.effect_from
    else:
        planned, where = std.value, "none given: one seed std"
    out = ClaimSeeds(claim, planned, where, std)
    margin = c.kind in seq.MARGIN_KINDS
    if margin:
        out.effect, out.effect_from = 0.0, f"planned at no difference, margin {c.margin:g}"
    elif c.kind not in seq.KINDS:
        out.effect, out.effect_from = None, f"no sequential rule for {c.kind!r} claims"
        return out
    sign = -1.0 if c.kind == "better_than" else 1.0
    true_diff = 0.0 if margin else sign * abs(out.effect or 0.0)
    rule = seq.Claimed(c.kind, c.margin, None if margin else true_diff)
    if not margin and not true_diff:
        out.effect, out.effect_from = None, "the expected difference is 0: nothing to decide"
        return out
    out.effect = true_diff
    out.fixed = fixed_seeds(rule, true_diff, std.value, alpha, power)
    found = adaptive_seeds(rule, true_diff, std.value, min_seeds, alpha, power,
                           out.fixed or MAX_ADAPTIVE_SEEDS)
    if found is not None:
        out.max_seeds, out.mean_at_effect, out.mean_at_zero = found
    return out


def plan_grid(grid: Any, claims: list[PointClaim], notes: list[str], hours: dict[str, Any],
              tracking_uri: str | None, *, alpha: float, power: float,
              effect: float | None = None, std: float | None = None) -> GridSeeds:
    min_seeds = grid.adaptive.min if grid.adaptive else 2
    out = GridSeeds(grid, [], list(notes), hours, alpha, power, min_seeds)
    models = {p.id: p.settings["model"] for p in grid.points}
    datasets = {p.id: p.settings["dataset"] for p in grid.points}
    for claim in claims:
        dataset = datasets[claim.row]
        if std is not None:
            noise = SeedStd(std, "given with --std")
        else:
            runs = finished_runs(tracking_uri, {models[claim.row], models[claim.ref]}, dataset)
            noise = seed_std(runs, dataset, claim.claim.metric)
        if noise is None:
            out.notes.append(f"{claim.claim.text}: no seed std for {dataset} (no repeated "
                             "seeds in the tracking store, no default); give --std")
            continue
        planned = plan_claim(claim, noise, effect=effect, alpha=alpha, power=power,
                             min_seeds=min_seeds)
        h_row, h_ref = hours.get(claim.row), hours.get(claim.ref)
        if h_row is not None and h_ref is not None:
            planned.hours_per_seed = h_row + h_ref
        out.claims.append(planned)
    for planned in out.claims:
        for point in (planned.claim.row, planned.claim.ref):
            fixed, top = out.per_point.get(point, (0, 0))
            out.per_point[point] = (max(fixed, planned.fixed or 0),
                                    max(top, planned.max_seeds or 0))
    return out


# ---------------------------------------------------------------------------
# Printing


def _hours(h: float | None) -> str:
    return "? device-hours (no throughput figure)" if h is None else f"{h:.1f} device-hours"


def _cost(hours_per_seed: float | None, seeds: float) -> float | None:
    return None if hours_per_seed is None else seeds * hours_per_seed


def _claim_lines(c: ClaimSeeds, min_seeds: int, labels: dict[str, str]) -> list[str]:
    claim = c.claim.claim
    metric = "top-5" if claim.metric == "top5" else "top-1"
    lines = [f"- {claim.text} ({labels[c.claim.row]} vs {labels[c.claim.ref]}, {metric})"]
    if c.effect is None:
        return [*lines, f"    not planned: {c.effect_from}"]
    shown = "" if claim.kind in seq.MARGIN_KINDS else f"{c.effect:+.2f} "
    lines.append(f"    effect {shown}({c.effect_from}); seed std {c.std.value:.2f}: "
                 f"{c.std.source}")
    h = c.hours_per_seed
    if c.fixed is None:
        lines.append(f"    fixed: more than {MAX_ADAPTIVE_SEEDS} seeds per row")
    else:
        lines.append(f"    fixed: {c.fixed} seeds per row ≈ {_hours(_cost(h, c.fixed))}")
    if c.max_seeds is None:
        lines.append(f"    adaptive: no max up to {MAX_ADAPTIVE_SEEDS} reaches the power")
    else:
        lines.append(
            f"    adaptive: seeds = {{ min = {min_seeds}, max = {c.max_seeds} }}: at most "
            f"{_hours(_cost(h, c.max_seeds))}; on average {c.mean_at_effect:.1f} seeds per "
            f"row at that effect ≈ {_hours(_cost(h, c.mean_at_effect or 0))}, "
            f"{c.mean_at_zero:.1f} at no difference")
    return lines


def render(plan: GridSeeds) -> str:
    g = plan.grid
    lines = [f"{g.name}: seeds per row to decide each claim (alpha {plan.alpha:g} two-sided, "
             f"power {plan.power:g})",
             f"  stopping rule: {seq.METHOD}"]
    labels = {p.id: p.label for p in g.points}
    for c in plan.claims:
        lines += _claim_lines(c, plan.min_seeds, labels)
    lines += [f"  note: {n}" for n in plan.notes]
    if not plan.claims:
        lines.append("  no claim to plan: add claims = [...] to the grid file")
        return "\n".join(lines)
    lines += _totals(plan, labels)
    return "\n".join(lines)


def _totals(plan: GridSeeds, labels: dict[str, str]) -> list[str]:
    g = plan.grid
    own = len(g.seeds) if g.adaptive is None else g.adaptive.max

    def total(pick) -> float | None:
        hours = 0.0
        for p in g.points:
            h = plan.hours.get(p.id)
            if h is None:
                return None
            hours += pick(p.id) * h
        return hours

    fixed = {pid: f for pid, (f, _) in plan.per_point.items()}
    top = {pid: t for pid, (_, t) in plan.per_point.items()}
    rest = len(g.seeds)  # points in no claim keep the grid's own seeds
    seeds = ", ".join(f"{labels[pid]} {n}" for pid, n in fixed.items())
    if len(fixed) < len(g.points):
        seeds += f" (the others {rest})"
    what = "max" if g.adaptive is not None else "seeds"
    return [
        f"  grid, every claim decided: fixed seeds per point {seeds} ≈ "
        f"{_hours(total(lambda pid: fixed.get(pid) or rest))}",
        f"  grid, adaptive: at most "
        f"{_hours(total(lambda pid: top.get(pid) or rest))}; the grid as written "
        f"({what} {own} per point) ≈ {_hours(total(lambda pid: own))}",
    ]
