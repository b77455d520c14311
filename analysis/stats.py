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


def seeds_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8,
                 sides: int = 2) -> int | None:
    """Seeds per row for a two-sample t-test between two rows to detect a true difference
    of ``effect`` points at level ``alpha`` (``sides`` = 2: two-sided; 1: one-sided) with
    probability ``power``, when each row's seeds scatter with standard deviation ``sd``.

    Starts from the normal approximation, n = 2 ((z_{1-alpha/sides} + z_power) sd / effect)^2,
    and steps up until the noncentral t power (df = 2n - 2) reaches ``power``: at a handful
    of seeds the normal approximation promises more than a t-test delivers. At least 2 (a
    row needs two seeds for a spread). None when no number of seeds decides: a zero
    effect, or an unknown (NaN) spread."""
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides}")
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    effect = abs(float(effect))
    if math.isnan(effect) or math.isnan(sd) or effect == 0.0:
        return None
    if sd <= 0.0:
        return 2
    z_alpha = float(_scipy_stats.norm.ppf(1.0 - alpha / sides))
    z_power = float(_scipy_stats.norm.ppf(power))
    n = max(2, math.ceil(2.0 * ((z_alpha + z_power) * sd / effect) ** 2))
    while _t_power(n, effect / sd, alpha, sides) < power:
        n += 1
    return n


def _t_power(n: int, standardized: float, alpha: float, sides: int) -> float:
    """Power of the two-sample t-test with n per group at a standardized difference."""
    df = 2 * n - 2
    shift = standardized * math.sqrt(n / 2.0)
    crit = t_quantile(1.0 - alpha / sides, df)
    power = float(_scipy_stats.nct.sf(crit, df, shift))
    if sides == 2:
        power += float(_scipy_stats.nct.cdf(-crit, df, shift))
    return power


@dataclass(frozen=True)
class SeedStd:
    """A seed-to-seed standard deviation of one metric, in error points, and its source."""

    value: float
    source: str


# What seeds scatter by when a grid has too few finished seeds to say: stated, and used
# only to size how many seeds a claim needs, never to decide one.
DEFAULT_SEED_STD: dict[tuple[str, str], SeedStd] = {
    ("imagenet", "top1"): SeedStd(0.10, "an assumption for ResNet-50-size ImageNet runs"),
    ("imagenet", "top5"): SeedStd(0.06, "an assumption for ResNet-50-size ImageNet runs"),
    ("cifar10", "top1"): SeedStd(0.16, "He et al. 2016, ResNet-110 over 5 runs: 6.61 ± 0.16"),
    ("cifar100", "top1"): SeedStd(0.30, "an assumption for ResNet-110-size CIFAR-100 runs"),
    ("cifar100", "top5"): SeedStd(0.20, "an assumption for ResNet-110-size CIFAR-100 runs"),
    ("builtin", "top1"): SeedStd(
        0.53, "the demo's budget, seeds 0-2: ResNet-20 ± 0.74, SE-ResNet-20 ± 0.13, pooled"),
}


def default_seed_std(dataset_family: str | None, metric: str = "top1") -> SeedStd | None:
    """The stated default seed std for a dataset family (cifar10, cifar100, imagenet,
    builtin) and metric (top1, top5), or None where none is stated."""
    return DEFAULT_SEED_STD.get((dataset_family or "", metric))


def pooled_std(groups: Iterable[Iterable[float]]) -> float:
    """Pooled sample standard deviation of several groups (each with its own mean); NaN
    without a group of two or more values."""
    num, df = 0.0, 0
    for group in groups:
        s = summarize(group)
        if s.n >= 2:
            num += (s.n - 1) * s.std**2
            df += s.n - 1
    return math.sqrt(num / df) if df else math.nan
