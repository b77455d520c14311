"""When a claim about two grid rows is decided: a group-sequential stopping rule.

Looking at a t-test after every new seed and stopping at the first p < 0.05 declares
far more false differences than 5 %: every look is another chance. This rule spends
the error rate over the looks instead, so a claim may be looked at after every seed
and still keep it.

* The looks are at k = min, min + 1, ..., max seeds per row, each on the first k
  finished seeds of both rows in seed order (seeds a shared row got for another claim
  are not used), so the look schedule is fixed in advance.
* Each look reads the per-seed differences d_i = row_i - ref_i. Seed i of both rows
  sees the same data order, and the d_i are independent normal whatever each row's own
  seed noise, so their one-sample t-statistic has the same law for every grid: one
  set of boundaries serves every grid and stays exact when the rows' noise differs
  (Welch's test, applied at several looks, does not: up to 6.3 % false claims at 5 %).
* The two-sided error rate alpha is spent over the looks by the O'Brien-Fleming-type
  function of Lan and DeMets (1983), alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)) at
  information fraction t = k / max: little at the first looks, most at max. The t
  boundary of each look is set so that the t-statistic first crosses it there with
  exactly the probability spent there; that law is free of the noise, so it is found
  once per design, by a simulation with a fixed seed (``CALIBRATION_PATHS`` paths).
* Look k gives the repeated confidence interval mean(d) ± c_k sd(d) / sqrt(k) (Jennison
  and Turnbull 1989); all of them cover the true difference together with probability
  1 - alpha, at whichever look the claim stops.

A claim is decided at the first look whose interval settles it: "for" when the whole
interval lies where the claim says, "against" when it excludes the claim's expected
effect (a difference as large as the paper's) or lies wholly on the other side;
otherwise it stays open, and at max seeds it is undecided. Every decision rests on an
interval that covers with 1 - alpha at all looks together, so when the two rows do not
differ the rule declares a difference (either way) with probability at most alpha.

References: K. K. G. Lan and D. L. DeMets, Discrete sequential boundaries for clinical
trials, Biometrika 70 (1983) 659-663; C. Jennison and B. W. Turnbull, Interim analyses:
the repeated confidence interval approach, JRSS B 51 (1989) 305-361.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as st

DEFAULT_ALPHA = 0.05
METHOD = ("repeated confidence intervals on per-seed differences, O'Brien-Fleming-type "
          "alpha spending (Lan & DeMets 1983; Jennison & Turnbull 1989)")
# The claim kinds with a sequential rule; others are judged by analysis/verdicts only.
KINDS = ("better_than", "worse_than", "within", "similar_to")
MARGIN_KINDS = ("within", "similar_to")  # judged against a margin, not an effect
FOR, AGAINST, OPEN, UNDECIDED = "decided for", "decided against", "open", "undecided at max"
CALIBRATION_PATHS = 400_000  # a multiple of the 50,000 drawn at a time
CALIBRATION_SEED = 24


@dataclass(frozen=True)
class Design:
    """Seeds per row from ``min_seeds`` up to ``max_seeds``, error rate ``alpha``."""

    min_seeds: int
    max_seeds: int
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        if not 2 <= self.min_seeds <= self.max_seeds:
            raise ValueError(f"need 2 <= min <= max seeds, got {self.min_seeds}, "
                             f"{self.max_seeds}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def looks(self) -> tuple[int, ...]:
        return tuple(range(self.min_seeds, self.max_seeds + 1))

    def boundaries(self) -> tuple[float, ...]:
        """The t boundary c_k of each look, in look order."""
        return _boundaries(self.min_seeds, self.max_seeds, self.alpha)


def spent(t: np.ndarray | float, alpha: float) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming-type spending: the error spent by information t."""
    t = np.asarray(t, dtype=float)
    return 2.0 - 2.0 * st.norm.cdf(st.norm.isf(alpha / 2) / np.sqrt(t))


@lru_cache(maxsize=64)
def _boundaries(min_seeds: int, max_seeds: int, alpha: float) -> tuple[float, ...]:
    """Each look's boundary on |t|, from simulated null paths: the paths first crossing
    at look k are the share spent(t_k) - spent(t_{k-1}) of all paths."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    looks = np.arange(min_seeds, max_seeds + 1)
    budget = np.diff(np.concatenate([[0.0], spent(looks / max_seeds, alpha)]))
    paths = CALIBRATION_PATHS
    chunk = 50_000  # bounded memory for a large max
    stats = np.concatenate([
        _abs_t(rng.standard_normal((chunk, max_seeds)), looks).astype(np.float32)
        for _ in range(paths // chunk)])
    alive = np.ones(paths, dtype=bool)
    out = []
    for i, share in enumerate(budget):
        ranked = np.sort(stats[alive, i])[::-1]
        take = int(round(share * paths))
        if take <= 0:
            c = math.inf
        elif take >= len(ranked):
            c = 0.0
        else:  # midway between the last path in and the first path out
            c = float((ranked[take - 1] + ranked[take]) / 2)
        out.append(float(c))
        alive &= stats[:, i] < c
    return tuple(out)


def _abs_t(diffs: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """|one-sample t| of each row's first k values, one column per look k."""
    k = np.asarray(looks)
    sums = np.cumsum(diffs, axis=1)[:, k - 1]
    squares = np.cumsum(diffs * diffs, axis=1)[:, k - 1]
    mean = sums / k
    var = np.maximum(squares - k * mean * mean, 0.0) / (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(mean) / np.sqrt(var / k)


# ---------------------------------------------------------------------------
# Judging one claim


@dataclass(frozen=True)
class Claimed:
    """What a claim says about diff = mean(row) - mean(ref), in error points (lower is
    better): better_than diff < 0, worse_than diff > 0, within diff < margin, similar_to
    -margin < diff < margin (equivalence). ``effect``
    (better/worse only): the size of difference the claim expects, e.g. the paper's;
    an interval that excludes it decides against. None: only the other side does."""

    kind: str
    margin: float = 0.0
    effect: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"no sequential rule for claim kind {self.kind!r}")


@dataclass(frozen=True)
class Decision:
    state: str  # FOR, AGAINST, OPEN or UNDECIDED
    seeds: int  # seeds per row at the deciding (or last) look; 0 before the first look
    diff: float = math.nan
    low: float = math.nan
    high: float = math.nan
    why: str = ""

    @property
    def decided(self) -> bool:
        return self.state in (FOR, AGAINST)


def settle(claimed: Claimed, low: float, high: float) -> tuple[str, str] | None:
    """(state, why) when the interval [low, high] decides the claim, else None.
    (_settle_many is the same rule over arrays, for the simulations.)"""
    m = claimed.margin
    if claimed.kind == "within":
        if high < m:
            return FOR, f"the interval lies below the margin {m:g}"
        if low > m:
            return AGAINST, f"the interval lies above the margin {m:g}"
        return None
    if claimed.kind == "similar_to":
        if -m < low and high < m:
            return FOR, f"the interval lies within ±{m:g}"
        if low > m or high < -m:
            return AGAINST, f"the interval lies outside ±{m:g}"
        return None
    sign = -1.0 if claimed.kind == "better_than" else 1.0
    # In the claim's own direction: positive means "as claimed".
    near, far = sorted((sign * low, sign * high))
    if near > 0:
        return FOR, "the interval excludes 0 on the claimed side"
    if far < 0:
        return AGAINST, "the interval lies on the other side of 0"
    if claimed.effect is not None and far < abs(claimed.effect):
        return AGAINST, f"it rules out the expected difference {sign * abs(claimed.effect):+.2f}"
    return None


def _settle_many(claimed: Claimed, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """settle() per interval: 1 decided for, 2 decided against, 0 open."""
    out = np.zeros(len(low), dtype=int)
    m = claimed.margin
    if claimed.kind == "within":
        out[low > m] = 2
        out[high < m] = 1
        return out
    if claimed.kind == "similar_to":
        out[(low > m) | (high < -m)] = 2
        out[(-m < low) & (high < m)] = 1
        return out
    sign = -1.0 if claimed.kind == "better_than" else 1.0
    # In the claim's own direction: positive means "as claimed".
    near = np.minimum(sign * low, sign * high)
    far = np.maximum(sign * low, sign * high)
    against = far < 0
    if claimed.effect is not None:
        against |= far < abs(claimed.effect)
    out[against] = 2
    out[near > 0] = 1
    return out


def intervals(design: Design, row: Sequence[float], ref: Sequence[float]
              ) -> list[tuple[int, float, float, float]]:
    """(seeds, diff, low, high) at every look the values reach, in look order."""
    reach = min(len(row), len(ref), design.max_seeds)
    if reach < design.min_seeds:
        return []
    bounds = design.boundaries()
    out = []
    mean = squares = 0.0  # running mean and sum of squared deviations (Welford)
    for k, (a, b) in enumerate(zip(row[:reach], ref[:reach], strict=True), start=1):
        d = float(a) - float(b)
        step = d - mean
        mean += step / k
        squares += step * (d - mean)
        if k < design.min_seeds:
            continue
        sd = math.sqrt(max(squares, 0.0) / (k - 1))
        bound = bounds[k - design.min_seeds]
        # No spread (identical differences) says nothing about the noise: no decision;
        # neither does a first look whose boundary no simulated null path crossed.
        half = bound * sd / math.sqrt(k) if sd > 1e-12 and math.isfinite(bound) else math.inf
        out.append((k, mean, mean - half, mean + half))
    return out


def decide(design: Design, claimed: Claimed, row: Sequence[float], ref: Sequence[float]
           ) -> Decision:
    """The claim's state from the finished values of its two rows, each in seed order."""
    last = None
    for seeds, diff, low, high in intervals(design, row, ref):
        last = (seeds, diff, low, high)
        settled = settle(claimed, low, high)
        if settled is not None:
            return Decision(settled[0], seeds, diff, low, high, settled[1])
    if last is None:
        return Decision(OPEN, 0, why=f"fewer than {design.min_seeds} finished seeds per row")
    seeds, diff, low, high = last
    state = UNDECIDED if seeds >= design.max_seeds else OPEN
    return Decision(state, seeds, diff, low, high, "the interval settles nothing yet")


# ---------------------------------------------------------------------------
# Behaviour by simulation (no training): for planning and the tests


@dataclass(frozen=True)
class Operating:
    """How the design behaves at one true difference: the chance of each decision and
    the mean seeds per row it stops at."""

    p_for: float
    p_against: float
    mean_seeds: float
    sims: int

    @property
    def p_undecided(self) -> float:
        return 1.0 - self.p_for - self.p_against


def simulate(design: Design, claimed: Claimed, true_diff: float, std: float = 1.0,
             ref_std: float | None = None, sims: int = 4000, seed: int = 0) -> Operating:
    """The stopping rule on ``sims`` simulated pairs of rows (normal seed noise ``std``,
    ``ref_std`` for the reference row if it differs)."""
    rng = np.random.default_rng(seed)
    n = design.max_seeds
    row = rng.normal(true_diff, std, size=(sims, n))
    ref = rng.normal(0.0, std if ref_std is None else ref_std, size=(sims, n))
    diffs = row - ref
    looks = np.array(design.looks)
    k = looks[None, :]
    mean = np.cumsum(diffs, axis=1)[:, looks - 1] / k
    sd = np.sqrt(np.maximum(np.cumsum(diffs * diffs, axis=1)[:, looks - 1] - k * mean**2, 0)
                 / (k - 1))
    half = np.asarray(design.boundaries())[None, :] * sd / np.sqrt(k)
    state = np.zeros(sims, dtype=int)
    stop = np.full(sims, n)
    for i, seeds in enumerate(looks):
        verdict = _settle_many(claimed, mean[:, i] - half[:, i], mean[:, i] + half[:, i])
        fresh = (state == 0) & (verdict > 0)
        state[fresh] = verdict[fresh]
        stop[fresh] = seeds
    return Operating(float(np.mean(state == 1)), float(np.mean(state == 2)),
                     float(stop.mean()), sims)
