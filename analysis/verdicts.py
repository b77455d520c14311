"""One line in words per paper claim: does the direction hold in our runs, and is it
significant at 95 % (Welch t-test over seeds)?"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from analysis.paper import Claim
from analysis.stats import summarize, welch_interval, welch_p_value

LEVEL = 0.95
_METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}


@dataclass(frozen=True)
class Side:
    """A claim's row as found in the grid: its label and its finished seeds' errors."""

    label: str
    values: Sequence[float]


# Looks a claim's row id up: the grid's row with its values for a metric, or None.
Resolver = Callable[[str, str], Side | None]


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def judge(claim: Claim, row: Side, ref: Side) -> str:
    """The verdict on ``claim`` from the seeds of ``row`` and ``ref``, as one sentence."""
    metric = _METRIC_NAMES[claim.metric]
    head = f"{claim.text} ({metric} error)"
    a, b = summarize(row.values), summarize(ref.values)
    if a.n == 0 or b.n == 0:
        missing = row.label if a.n == 0 else ref.label
        return f"{head}: cannot be judged yet, no finished seed of {missing}."
    diff = a.mean - b.mean
    numbers = f"{row.label} {a.mean:.2f} vs {ref.label} {b.mean:.2f}, Δ {diff:+.2f}"
    if claim.kind == "within":
        holds = diff < claim.margin
        numbers += f", margin {claim.margin:g}"
    else:
        holds = diff < 0 if claim.kind == "better_than" else diff > 0
    direction = "holds" if holds else "does not hold"
    if a.n < 2 or b.n < 2:
        return (
            f"{head}: {direction} ({numbers}); with {_seeds(min(a.n, b.n))} per row, "
            "significance cannot be judged."
        )
    if claim.kind == "within":
        # One-sided: is the upper 95 % bound of the difference below the margin?
        ci = welch_interval(a, b, level=2 * LEVEL - 1)
        upper = ci.high if ci is not None else math.nan
        significant = holds and upper < claim.margin
        test = f"one-sided 95 % Welch bound {upper:+.2f}"
    else:
        p = welch_p_value(row.values, ref.values)
        significant = p < 1 - LEVEL
        test = "Welch t-test, p = " + ("n/a (no spread)" if math.isnan(p) else f"{p:.3g}")
    if not significant:
        verdict = "not significant at 95 %"
    else:
        verdict = "significant at 95 %" + ("" if holds else ", in the opposite direction")
    return f"{head}: {direction} ({numbers}); {verdict} ({test}; {_seeds(a.n)} vs {b.n})."


def verdicts(claims: Sequence[Claim], resolve: Resolver) -> list[str]:
    """A line per claim; a claim whose rows the grid lacks says which one."""
    lines = []
    for claim in claims:
        row, ref = resolve(claim.row, claim.metric), resolve(claim.ref, claim.metric)
        if row is None or ref is None:
            lacking = claim.row if row is None else claim.ref
            lines.append(f"{claim.text}: cannot be judged, the grid has no row for {lacking!r}.")
            continue
        lines.append(judge(claim, row, ref))
    return lines
