"""One line in words per paper claim, decided by the table's rule: an interval over seeds.

A claim holds (or does not) only when an interval over seeds decides it: for a direction,
a 95 % Welch interval of the difference that excludes 0; for a margin, a 90 % interval
(two one-sided 95 % bounds) on the right side of it; for a whole row set, Bonferroni
intervals over its pairs. Anything else is "not decided", never a direction read off two
means, and an undecided line says how many seeds per row would decide it
(analysis.stats.seeds_needed: the paper's difference where it prints one, the seeds'
spread where there are two or more, else the stated default for the dataset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

from analysis.paper import CLAIM_KINDS, Claim, dataset_family
from analysis.stats import (
    SeedStd,
    Summary,
    default_seed_std,
    pooled_std,
    seeds_needed,
    summarize,
    welch_interval,
)

ALPHA = 0.05
POWER = 0.8
_METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}
JUDGEABLE = CLAIM_KINDS  # every kind paper.py parses has a rule below


@dataclass(frozen=True)
class Side:
    """A claim's row as found in the grid: its label, its finished seeds' errors and, where
    the paper prints one, the paper's error for that row."""

    label: str
    values: Sequence[float]
    paper: float | None = None


# Looks a claim's row id up: the grid's row with its values for a metric, or None.
Resolver = Callable[[str, str], Side | None]


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _sizing(effect: float, what: str, spread: tuple[float, str] | None,
            sides: int, alpha: float, test: str) -> str:
    """The sentence on how many seeds per row would decide the claim."""
    if spread is None:
        return ("No seed count can be given: no seed std is stated for this dataset "
                "(finish a second seed per row).")
    sd, source = spread
    n = seeds_needed(effect, sd, alpha=alpha, power=POWER, sides=sides) if effect else None
    if n is None:
        return f"No seed count can be given: {what} 0 points."
    return (f"About {n} seeds per row would decide it: {what} {effect:.2f} points against a "
            f"seed std of {sd:.2f} ({source}), {test} with power {POWER:g}.")


def _spread(summaries: Sequence[Summary], values: Sequence[Sequence[float]],
            noise: SeedStd | None) -> tuple[float, str] | None:
    """The seed std to size with: these rows' own where each has two seeds, else the
    dataset's stated default."""
    if all(s.n >= 2 for s in summaries):
        sd = pooled_std(values)
        if not math.isnan(sd):
            return sd, "pooled over these rows' seeds"
    if noise is None:
        return None
    return noise.value, f"stated default: {noise.source}"


def _paper_diff(row: Side, ref: Side) -> float | None:
    if row.paper is None or ref.paper is None:
        return None
    return row.paper - ref.paper


def _expected(row: Side, ref: Side, observed: float) -> tuple[float, str]:
    """The difference to size with: the paper's, else ours."""
    paper = _paper_diff(row, ref)
    return (paper, "the paper's difference") if paper is not None else (
        observed, "the observed difference")


def _direction(claim: Claim, head: str, row: Side, ref: Side, noise: SeedStd | None) -> str:
    a, b = summarize(row.values), summarize(ref.values)
    diff = a.mean - b.mean
    numbers = f"{row.label} {a.mean:.2f} vs {ref.label} {b.mean:.2f}, Δ {diff:+.2f}"
    expected, what = _expected(row, ref, diff)
    sizing = _sizing(abs(expected), f"{what},", _spread((a, b), (row.values, ref.values), noise),
                     2, ALPHA, f"two-sided t-test at α = {ALPHA:g}")
    if a.n < 2 or b.n < 2:
        return (f"{head}: not decided at {_seeds(min(a.n, b.n))} per row ({numbers}; one "
                f"seed gives no interval). {sizing}")
    ci = welch_interval(a, b)
    assert ci is not None
    interval = f"95 % CI [{ci.low:+.2f}, {ci.high:+.2f}]; {_seeds(a.n)} vs {b.n}"
    if not ci.excludes_zero():
        return f"{head}: not decided ({numbers}, {interval}: the interval includes 0). {sizing}"
    lower = ci.high < 0
    if lower == (claim.kind == "better_than"):
        return f"{head}: holds ({numbers}, {interval})."
    return f"{head}: does not hold: the opposite is significant ({numbers}, {interval})."


def _margin(claim: Claim, head: str, row: Side, ref: Side, noise: SeedStd | None) -> str:
    """within (at most `margin` more error) and similar_to (within `margin` either way)."""
    a, b = summarize(row.values), summarize(ref.values)
    diff = a.mean - b.mean
    two_sided = claim.kind == "similar_to"
    bound = f"±{claim.margin:g}" if two_sided else f"+{claim.margin:g}"
    numbers = f"{row.label} {a.mean:.2f} vs {ref.label} {b.mean:.2f}, Δ {diff:+.2f}, margin {bound}"
    expected, what = _expected(row, ref, diff)
    room = claim.margin - (abs(expected) if two_sided else expected)
    if room > 0:
        sizing = _sizing(room, f"the room between {what} ({expected:+.2f}) and the margin,",
                         _spread((a, b), (row.values, ref.values), noise), 1, ALPHA,
                         f"one-sided t-test{'s on each side' if two_sided else ''} against "
                         f"the margin at α = {ALPHA:g}")
    else:
        sizing = (f"No seed count can be given: {what} ({expected:+.2f}) is not inside the "
                  "margin.")
    if a.n < 2 or b.n < 2:
        return (f"{head}: not decided at {_seeds(min(a.n, b.n))} per row ({numbers}; one "
                f"seed gives no interval). {sizing}")
    ci = welch_interval(a, b, level=1 - 2 * ALPHA)
    assert ci is not None
    interval = f"90 % CI [{ci.low:+.2f}, {ci.high:+.2f}]; {_seeds(a.n)} vs {b.n}"
    low_side = -claim.margin if two_sided else -math.inf
    if low_side < ci.low and ci.high < claim.margin:
        return f"{head}: holds ({numbers}, {interval}: inside the margin)."
    if ci.low > claim.margin or ci.high < low_side:
        return f"{head}: does not hold ({numbers}, {interval}: beyond the margin)."
    return f"{head}: not decided ({numbers}, {interval}: it overlaps the margin). {sizing}"


def _reversal(means: Sequence[float]) -> tuple[int, int, float] | None:
    """The pair (earlier, later) whose earlier row has the most error above the later."""
    pairs = [(i, j, means[i] - means[j]) for i, j in combinations(range(len(means)), 2)]
    best = max(pairs, key=lambda p: p[2])
    return best if best[2] > 0 else None


def _not_monotone(claim: Claim, head: str, sides: Sequence[Side], noise: SeedStd | None) -> str:
    stats = [summarize(s.values) for s in sides]
    labels = [s.label for s in sides]
    pairs = len(sides) * (len(sides) - 1) // 2
    alpha = ALPHA / pairs
    numbers = ", ".join(f"{s.label} {st.mean:.2f}" for s, st in zip(sides, stats, strict=True))
    observed = _reversal([st.mean for st in stats])
    papers = [s.paper for s in sides]
    paper = _reversal(papers) if all(p is not None for p in papers) else None  # type: ignore[arg-type]
    use, what = (paper, "the paper's largest reversal") if paper else (
        observed, "the largest reversal observed")
    spread = _spread(stats, [s.values for s in sides], noise)
    test = (f"one-sided t-test per pair at α = {ALPHA:g}/{pairs}, Bonferroni over the "
            f"{pairs} pairs")
    if use is None:
        sizing = ("No seed count can be given: no row has more error than a row listed after "
                  "it, in the paper or here.")
    else:
        i, j, d = use
        sizing = _sizing(d, f"{what}, {labels[i]} above {labels[j]} by", spread, 1, alpha, test)
    if min(st.n for st in stats) < 2:
        return (f"{head}: not decided at {_seeds(min(st.n for st in stats))} per row "
                f"({numbers}; one seed gives no interval). {sizing}")
    level = 1 - 2 * alpha
    found = []
    for i, j in combinations(range(len(sides)), 2):
        ci = welch_interval(stats[i], stats[j], level=level)
        if ci is not None and ci.low > 0:
            found.append((ci.low, i, j, ci))
    if found:
        _, i, j, ci = max(found, key=lambda f: f[0])
        return (f"{head}: holds: {labels[i]} has more error than {labels[j]}, listed after it "
                f"(Δ {ci.diff:+.2f}, {100 * level:.1f} % CI [{ci.low:+.2f}, {ci.high:+.2f}], "
                f"Bonferroni over {pairs} pairs; {numbers}).")
    steps = [welch_interval(stats[k + 1], stats[k], level=1 - 2 * ALPHA)
             for k in range(len(sides) - 1)]
    if all(ci is not None and ci.low > 0 for ci in steps):
        return (f"{head}: does not hold: error rises at every step along the rows (each "
                f"step's one-sided 95 % bound above 0; {numbers}).")
    return (f"{head}: not decided ({numbers}; no pair reverses beyond its {100 * level:.1f} % "
            f"interval and not every step rises significantly). {sizing}")


def judge(claim: Claim, sides: Sequence[Side], noise: SeedStd | None = None) -> str:
    """The verdict on ``claim`` from its rows' seeds (in ``claim.names`` order), as one
    sentence. ``noise`` is the dataset's default seed std, used only to size seeds."""
    head = f"{claim.text} ({_METRIC_NAMES[claim.metric]} error)"
    empty = next((s for s in sides if summarize(s.values).n == 0), None)
    if empty is not None:
        return f"{head}: cannot be judged yet, no finished seed of {empty.label}."
    if claim.kind == "not_monotone":
        return _not_monotone(claim, head, sides, noise)
    row, ref = sides
    if claim.kind in ("within", "similar_to"):
        return _margin(claim, head, row, ref, noise)
    return _direction(claim, head, row, ref, noise)


def verdicts(claims: Sequence[Claim], resolve: Resolver, dataset: str | None = None) -> list[str]:
    """A line per claim; a claim whose rows the grid lacks says which one."""
    family = dataset_family(dataset)
    lines = []
    for claim in claims:
        sides = [resolve(name, claim.metric) for name in claim.names]
        lacking = next((n for n, s in zip(claim.names, sides, strict=True) if s is None), None)
        if lacking is not None:
            lines.append(f"{claim.text}: cannot be judged, the grid has no row for {lacking!r}.")
            continue
        noise = default_seed_std(family, claim.metric)
        lines.append(judge(claim, [s for s in sides if s is not None], noise))
    return lines
