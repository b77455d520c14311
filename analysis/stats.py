"""Seed statistics: mean ± std, Welch t intervals and Welch t-tests (scipy.stats)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats as _scipy_stats


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` > 0 (possibly fractional) degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    return float(_scipy_stats.t.ppf(p, df))


def welch_p_value(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p of Welch's t-test for equal means; NaN below two values in either group
    or when neither group has any spread."""
    xs, ys = list(a), list(b)
    if len(xs) < 2 or len(ys) < 2:
        return math.nan
    return float(_scipy_stats.ttest_ind(xs, ys, equal_var=False).pvalue)


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof = 1; NaN below two values)."""

    n: int
    mean: float
    std: float


def summarize(values: Iterable[float]) -> Summary:
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n < 2:
        return Summary(n, mean, math.nan)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return Summary(n, mean, math.sqrt(var))


@dataclass(frozen=True)
class Interval:
    """A difference of means with its confidence interval and Welch degrees of freedom."""

    diff: float
    low: float
    high: float
    df: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def welch_interval(a: Summary, b: Summary, level: float = 0.95) -> Interval | None:
    """CI for mean(a) - mean(b) without assuming equal variances; None below 2 values each."""
    if a.n < 2 or b.n < 2:
        return None
    diff = a.mean - b.mean
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    se2 = va + vb
    if se2 == 0.0:
        # Identical values in both groups: no spread to build an interval from.
        return Interval(diff, diff, diff, float(a.n + b.n - 2))
    df = se2**2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = t_quantile(0.5 + level / 2.0, df) * math.sqrt(se2)
    return Interval(diff, diff - half, diff + half, df)
