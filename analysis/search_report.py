"""The report of a per-stage reduction search: Pareto front, table, figure, verdict.

Input is plain data, one ``SearchTrial`` per finished trial (its per-stage r, its
validation top-1 error per seed in percent, params and GMACs), so the report can be
tested on synthetic trials and fed from an Optuna study (``trials_from_study``).

The yardstick is the paper's own choice: one r for every stage. The uniform trials
(r = 2, 4, ..., 32 in every stage) form a curve of error against cost; a per-stage
setting is measured by its error minus the curve's error at its cost (linear
interpolation in cost; clamped to the curve's ends outside it, which the table marks).
The verdict follows the tables' rule: "yes" only where that difference's interval over
seeds lies below zero, else "not decided" (see ``judge_search``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.stats import t_quantile

COSTS = {"params": ("params_m", "params (M)"), "gmacs": ("gmacs", "GMACs")}


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


@dataclass(frozen=True)
class CurveGap:
    """A trial's error minus the uniform curve's at its cost, with its interval over seeds."""

    trial: SearchTrial
    diff: float
    low: float | None  # None: too few seeds for an interval
    high: float | None


def curve_gap(trial: SearchTrial, curve: Sequence[SearchTrial], cost: str = "params",
              level: float = 0.95) -> CurveGap | None:
    """The trial against the uniform curve at its cost, with a Welch interval over seeds.

    The curve's error there is w * A + (1 - w) * B for its two neighbours A and B in cost,
    so the difference's variance is s_t^2/n_t + w^2 s_A^2/n_A + (1 - w)^2 s_B^2/n_B, with
    Welch-Satterthwaite degrees of freedom. None outside the curve's cost range."""
    xs = [t.cost(cost) for t in curve]
    x = trial.cost(cost)
    if not curve or not min(xs) <= x <= max(xs):
        return None
    k = next(i for i in range(len(curve)) if xs[i] >= x)
    j = max(k - 1, 0)
    w = 1.0 if xs[k] == xs[j] else (xs[k] - x) / (xs[k] - xs[j])  # weight of curve[j]
    parts = [(trial, 1.0), (curve[j], w), (curve[k], 1.0 - w)]
    diff = trial.error - sum(c * t.error for t, c in parts[1:])
    pieces = [(c**2 * t.error_std**2 / len(t.errors), len(t.errors) - 1)
              for t, c in parts if c > 0 and t.error_std is not None]
    if len(pieces) < sum(1 for _, c in parts if c > 0):
        return CurveGap(trial, diff, None, None)  # a single-seed trial: no interval
    se2 = sum(v for v, _ in pieces)
    if se2 == 0:
        return CurveGap(trial, diff, diff, diff)
    df = se2**2 / sum(v**2 / d for v, d in pieces)
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(se2)
    return CurveGap(trial, diff, diff - half, diff + half)


def _monotone(curve: Sequence[SearchTrial]) -> bool:
    """Error falls (or stays) as cost rises along the uniform curve."""
    return all(b.error <= a.error for a, b in zip(curve, curve[1:], strict=False))


def verdict(trials: Sequence[SearchTrial], cost: str = "params") -> str:
    """One sentence, by the tables' rule: a per-stage setting beats the uniform curve only
    where its interval over seeds (Bonferroni over the per-stage trials compared, since
    the best of many is picked) lies below zero; otherwise it is not decided."""
    return judge_search(trials, cost)[0]


def judge_search(trials: Sequence[SearchTrial], cost: str = "params"
                 ) -> tuple[str, SearchTrial | None]:
    """The verdict and the per-stage trial it names (None when it names none)."""
    curve = uniform_curve(trials, cost)
    if len(curve) < 2:
        return "No verdict: fewer than two uniform-r trials, so there is no curve to beat.", None
    candidates = [t for t in trials if t.uniform_r is None and not t.is_plain]
    m = sum(1 for t in candidates if curve_gap(t, curve, cost) is not None)
    if not m:
        return ("No verdict: no per-stage trial lies within the cost range of the "
                "uniform-r curve."), None
    level = 1 - 0.05 / m
    gaps = [g for t in candidates if (g := curve_gap(t, curve, cost, level)) is not None]
    shape = "" if _monotone(curve) else (
        " The uniform-r curve itself is not monotone in cost, so its own points are as "
        "noisy as the trials.")
    bounded = [g for g in gaps if g.high is not None]
    if not bounded:
        best = min(gaps, key=lambda g: g.diff)
        side = "below" if best.diff < 0 else "above"
        return (f"Not decided: one seed per trial gives no interval over seeds; the best "
                f"per-stage setting, {_named(best.trial)}, is {abs(best.diff):.2f} points "
                f"{side} the uniform-r curve.{shape}"), best.trial
    strongest = min(bounded, key=lambda g: g.high)  # type: ignore[arg-type, return-value]
    if strongest.high < 0:  # type: ignore[operator]
        return (f"Yes: {_named(strongest.trial)} is {-strongest.diff:.2f} points below the "
                f"uniform-r curve at its cost ({_interval(strongest, level, m)})."
                f"{shape}"), strongest.trial
    closest = min(gaps, key=lambda g: g.diff)
    return (f"Not decided: no per-stage setting's interval lies below the uniform-r curve; "
            f"the lowest, {_named(closest.trial)}, is {closest.diff:+.2f} points from it "
            f"({_interval(closest, level, m)}).{shape}"), closest.trial


def _interval(gap: CurveGap, level: float, m: int) -> str:
    bounds = "n < 2" if gap.low is None else f"{gap.low:+.2f}, {gap.high:+.2f}"
    trials = "1 per-stage trial" if m == 1 else f"{m} per-stage trials"
    return f"{100 * level:.1f} % interval [{bounds}] over seeds, Bonferroni over {trials}"


def _named(trial: SearchTrial) -> str:
    return f"trial {trial.number} (r = {trial.reduction})"


# ---------------------------------------------------------------------------
# Table and figure


def front_table(trials: Sequence[SearchTrial], cost: str = "params",
                named: SearchTrial | None = None) -> str:
    """Markdown table of the non-dominated trials, and of ``named`` (the trial the verdict
    names) where it is not one of them."""
    curve = uniform_curve(trials, cost)
    stages = len(trials[0].reduction.split(",")) if trials else 0
    head = ["trial", *(f"r{i + 1}" for i in range(stages)), "top-1 err (%)", "params (M)",
            "GMACs", "vs uniform curve (pts)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    front = pareto_front(trials, cost)
    shown = front + ([named] if named is not None and named not in front else [])
    for t in sorted(shown, key=lambda t: (t.cost(cost), t.error)):
        err = f"{t.error:.2f}" + (f" ± {t.error_std:.2f}" if t.error_std is not None else "")
        d, inside = distance_from_curve(t, curve, cost)
        dist = "—" if d is None else f"{d:+.2f}" + ("" if inside else " (outside curve)")
        if t.uniform_r is not None:
            dist += " (uniform)"
        if t not in front:
            dist += " (named by the verdict; not on the front)"
        cells = [str(t.number), *t.reduction.split(","), err, f"{t.params_m:.4f}",
                 f"{t.gmacs:.4f}", dist]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    trials: Sequence[SearchTrial], out_dir: str | Path, cost: str = "params",
    model: str | None = None, title: str | None = None, pruned: int = 0,
) -> dict[str, Any]:
    """Write pareto.md, pareto.png and pareto.pdf under ``out_dir``; return the pieces."""
    from analysis.figures import save_figure
    from analysis.search_figure import front_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    line, named = judge_search(trials, cost)
    table = front_table(trials, cost, named)
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
