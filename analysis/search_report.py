"""The report of a per-stage reduction search: Pareto front, table, figure, verdict.

Input is plain data, one ``SearchTrial`` per finished trial (its per-stage r, its
validation top-1 error per seed in percent, params and GMACs), so the report can be
tested on synthetic trials and fed from an Optuna study (``trials_from_study``).

The yardstick is the paper's own choice: one r for every stage. The uniform trials
(r = 2, 4, ..., 32 in every stage) form a curve of error against cost; a per-stage
setting is judged by its error minus the curve's error at its cost (linear
interpolation in cost; clamped to the curve's ends outside it, which the table marks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

COSTS = {"params": ("params_m", "params (M)"), "gmacs": ("gmacs", "GMACs")}
# Paper Table 10 is SE-ResNet-50 on ImageNet; it is drawn only for that model.
PAPER_MODEL = "se_resnet50"


@dataclass(frozen=True)
class SearchTrial:
    number: int
    reduction: str  # one value per stage, e.g. "4,8,none"; all "none" is the plain network
    errors: tuple[float, ...]  # validation top-1 error (%) per seed
    params_m: float
    gmacs: float

    @property
    def error(self) -> float:
        return float(np.mean(self.errors))

    @property
    def error_std(self) -> float | None:
        return float(np.std(self.errors, ddof=1)) if len(self.errors) > 1 else None

    @property
    def uniform_r(self) -> int | None:
        """The r of a trial with the same ratio in every stage, else None."""
        values = set(self.reduction.split(","))
        if len(values) == 1 and (value := values.pop()) != "none":
            return int(value)
        return None

    @property
    def is_plain(self) -> bool:
        return all(v == "none" for v in self.reduction.split(","))

    def cost(self, kind: str) -> float:
        return getattr(self, COSTS[kind][0])


def pareto_front(trials: Sequence[SearchTrial], cost: str = "params") -> list[SearchTrial]:
    """The non-dominated trials (lower mean error, lower cost), by increasing cost."""

    def dominates(a: SearchTrial, b: SearchTrial) -> bool:
        no_worse = a.error <= b.error and a.cost(cost) <= b.cost(cost)
        return no_worse and (a.error < b.error or a.cost(cost) < b.cost(cost))

    front = [t for t in trials if not any(dominates(o, t) for o in trials if o is not t)]
    return sorted(front, key=lambda t: (t.cost(cost), t.error))


def uniform_curve(
    trials: Sequence[SearchTrial], cost: str = "params", r_range: tuple[int, int] = (2, 32)
) -> list[SearchTrial]:
    """The uniform-r trials with r in ``r_range``, by increasing cost (the paper's curve).
    Where one r was tried more than once, the first trial stands for it."""
    by_r: dict[int, SearchTrial] = {}
    for t in trials:
        r = t.uniform_r
        if r is not None and r_range[0] <= r <= r_range[1]:
            by_r.setdefault(r, t)
    return sorted(by_r.values(), key=lambda t: t.cost(cost))


def distance_from_curve(
    trial: SearchTrial, curve: Sequence[SearchTrial], cost: str = "params"
) -> tuple[float | None, bool]:
    """(error minus the curve's error at the trial's cost, in points; whether the cost lies
    inside the curve's range). None without at least one uniform point."""
    if not curve:
        return None, False
    xs = np.array([t.cost(cost) for t in curve])
    ys = np.array([t.error for t in curve])
    x = trial.cost(cost)
    inside = bool(xs.min() <= x <= xs.max())
    return float(trial.error - np.interp(x, xs, ys)), inside


def seed_noise(trials: Sequence[SearchTrial]) -> float | None:
    """Pooled standard deviation over seeds (points), from trials with several seeds."""
    variances = [t.error_std**2 for t in trials if t.error_std is not None]
    return math.sqrt(float(np.mean(variances))) if variances else None


def verdict(trials: Sequence[SearchTrial], cost: str = "params") -> str:
    """One sentence: did a per-stage setting beat the uniform curve by more than the noise?"""
    curve = uniform_curve(trials, cost)
    if len(curve) < 2:
        return "No verdict: fewer than two uniform-r trials, so there is no curve to beat."
    noise = seed_noise(trials)
    candidates = []
    for t in trials:
        if t.uniform_r is not None or t.is_plain:
            continue
        d, inside = distance_from_curve(t, curve, cost)
        if d is not None and inside:
            candidates.append((d, t))
    if not candidates:
        return ("No verdict: no per-stage trial lies within the cost range of the "
                "uniform-r curve.")
    best_d, best = min(candidates, key=lambda c: c[0])
    what = f"trial {best.number} (r = {best.reduction})"
    if noise is None:
        side = "below" if best_d < 0 else "above"
        return (f"Cannot tell: one seed per trial gives no seed-noise estimate; the best "
                f"per-stage setting, {what}, is {abs(best_d):.2f} points {side} the "
                "uniform-r curve.")
    if -best_d > noise:
        return (f"Yes: {what} is {-best_d:.2f} points below the uniform-r curve, more than "
                f"the seed noise ({noise:.2f} points std).")
    return (f"No: no per-stage setting beat the uniform-r curve by more than the seed "
            f"noise ({noise:.2f} points std); the best, {what}, is {best_d:+.2f} points "
            "from it.")


# ---------------------------------------------------------------------------
# Table and figure


def front_table(trials: Sequence[SearchTrial], cost: str = "params") -> str:
    """Markdown table of the non-dominated trials."""
    curve = uniform_curve(trials, cost)
    stages = len(trials[0].reduction.split(",")) if trials else 0
    head = ["trial", *(f"r{i + 1}" for i in range(stages)), "top-1 err (%)", "params (M)",
            "GMACs", "vs uniform curve (pts)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in pareto_front(trials, cost):
        err = f"{t.error:.2f}" + (f" ± {t.error_std:.2f}" if t.error_std is not None else "")
        d, inside = distance_from_curve(t, curve, cost)
        dist = "—" if d is None else f"{d:+.2f}" + ("" if inside else " (outside curve)")
        if t.uniform_r is not None:
            dist += " (uniform)"
        cells = [str(t.number), *t.reduction.split(","), err, f"{t.params_m:.4f}",
                 f"{t.gmacs:.4f}", dist]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paper_points() -> list[tuple[float, float, str]]:
    from analysis.paper import load_paper_numbers

    book = load_paper_numbers()
    table = next(t for t in book.tables if t.key == "reduction")
    return [(r.params_m, r.top1, r.label) for r in table.rows
            if r.params_m is not None and r.top1 is not None and "reduction" in r.match]


def front_figure(
    trials: Sequence[SearchTrial], cost: str = "params", model: str | None = None,
    title: str | None = None,
) -> Figure:
    """Error against cost: every trial, the Pareto front, the uniform-r curve, and for
    SE-ResNet-50 the paper's Table 10."""
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = fig.subplots()
    label = COSTS[cost][1]
    others = [t for t in trials if t.uniform_r is None and not t.is_plain]
    ax.scatter([t.cost(cost) for t in others], [t.error for t in others], s=22,
               color="0.6", label="per-stage trials", zorder=2)
    front = pareto_front(trials, cost)
    ax.step([t.cost(cost) for t in front], [t.error for t in front], where="post",
            color="tab:red", lw=1.4, label="Pareto front", zorder=3)
    ax.scatter([t.cost(cost) for t in front], [t.error for t in front], s=46,
               facecolors="none", edgecolors="tab:red", lw=1.4, zorder=4)
    curve = uniform_curve(trials, cost)
    if curve:
        ax.plot([t.cost(cost) for t in curve], [t.error for t in curve], "o-",
                color="tab:blue", lw=1.4, ms=6, label="uniform r (paper's choice)", zorder=5)
        for t in curve:
            ax.annotate(f"r={t.uniform_r}", (t.cost(cost), t.error), textcoords="offset points",
                        xytext=(4, 5), fontsize=8, color="tab:blue")
    for t in trials:
        if t.is_plain:
            ax.scatter([t.cost(cost)], [t.error], marker="s", s=40, color="black",
                       label="no SE", zorder=5)
            break
    if model == PAPER_MODEL and cost == "params":
        paper = _paper_points()
        ax.plot([p[0] for p in paper], [p[1] for p in paper], "D--", color="tab:green",
                ms=5, lw=1, label="paper Table 10 (ImageNet)", zorder=5)
    ax.set_xlabel(label)
    ax.set_ylabel("validation top-1 error (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def write_report(
    trials: Sequence[SearchTrial], out_dir: str | Path, cost: str = "params",
    model: str | None = None, title: str | None = None, pruned: int = 0,
) -> dict[str, Any]:
    """Write pareto.md, pareto.png and pareto.pdf under ``out_dir``; return the pieces."""
    from analysis.figures import save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = front_table(trials, cost)
    line = verdict(trials, cost)
    head = f"# {title}\n\n" if title else ""
    counts = f"{len(trials)} finished trials, {pruned} pruned.\n\n"
    (out / "pareto.md").write_text(f"{head}{counts}{table}\n\n**Verdict.** {line}\n")
    figures = save_figure(front_figure(trials, cost, model, title), out / "pareto")
    return {"table": table, "verdict": line, "files": [out / "pareto.md", *figures]}


def trials_from_study(study: Any, search: Any) -> list[SearchTrial]:
    """Finished trials of a search study (see senet.queue.search), over-budget ones left out.

    Expects the error objective in percent, and the per-seed errors, where several, in
    the trial's ``senet.seed_errors`` user attribute.
    """
    from optuna.trial import TrialState

    from senet.models import build
    from senet.models.flops import count
    from senet.queue.search import reduction_string, trial_settings

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        settings = trial_settings(search, t.params)
        options = {k: v for k, v in settings.items()
                   if k in ("reduction", "stages", "squeeze", "gate", "activation")}
        counts = count(build(settings["model"], **options))
        errors = tuple(t.user_attrs.get("senet.seed_errors", [t.values[0]]))
        out.append(SearchTrial(t.number, reduction_string(search, t.params), errors,
                               counts.params / 1e6, counts.gmacs))
    return out
