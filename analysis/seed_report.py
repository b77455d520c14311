"""Under an adaptive grid's table: each claim's state under the stopping rule, the seeds
each point used, and the device-hours saved against running max seeds everywhere."""

from __future__ import annotations

import math

import pandas as pd

from analysis.claim_points import resolve
from analysis.gridspec import GridSpec
from analysis.paper import PaperTable
from senet.queue import sequential as seq

_METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}


def _values(finished: pd.DataFrame, point: str, metric: str) -> list[float]:
    mine = finished[finished["point"] == point].sort_values("seed")
    return [float(v) for v in mine[metric] if not math.isnan(float(v))]


def _interval(d: seq.Decision, level: float) -> str:
    if math.isnan(d.diff):
        return ""
    low = "-inf" if d.low == -math.inf else f"{d.low:+.2f}"
    high = "inf" if d.high == math.inf else f"{d.high:+.2f}"
    return f"Δ {d.diff:+.2f}, repeated {level:.0%} interval [{low}, {high}]"


def claim_line(text: str, metric: str, decision: seq.Decision, alpha: float) -> str:
    where = _interval(decision, 1 - alpha)
    per_row = f"{decision.seeds} seed" + ("" if decision.seeds == 1 else "s") + " per row"
    if decision.decided:
        return f"{text} ({_METRIC_NAMES[metric]}): {decision.state} at {per_row} " \
               f"({where}: {decision.why})."
    if decision.state == seq.UNDECIDED:
        return f"{text} ({_METRIC_NAMES[metric]}): undecided at max, {per_row} ({where})."
    if decision.seeds == 0:
        return f"{text} ({_METRIC_NAMES[metric]}): open, {decision.why}."
    return f"{text} ({_METRIC_NAMES[metric]}): open after {per_row} ({where})."


def point_hours(runs: pd.DataFrame) -> dict[str, float]:
    """Mean wall-clock hours of each point's finished runs (one device each)."""
    if runs.empty:
        return {}
    done = runs[(runs["status"] == "FINISHED") & runs["end_time"].notna()]
    hours = (done["end_time"] - done["start_time"]) / 3.6e6
    return {str(k): float(v) for k, v in hours.groupby(done["point"]).mean().items()}


def adaptive_lines(spec: GridSpec, paper: PaperTable | None, finished: pd.DataFrame,
                   by_paper_row: dict[str, str], runs: pd.DataFrame) -> list[str]:
    """The procedure's lines for the verdicts under the table."""
    a = spec.adaptive
    design = seq.Design(a.min, a.max, a.alpha)
    lines = [f"Adaptive seeds (seeds = {{ min = {a.min}, max = {a.max} }}, alpha {a.alpha:g}; "
             f"{seq.METHOD}):"]
    claims, _ = resolve(spec, paper, by_paper_row)
    tried = {p.point_id: len(p.seeds) for p in spec.points}
    for c in claims:
        claim = c.claim
        if claim.kind not in seq.KINDS:
            lines.append(f"{claim.text}: no sequential rule for {claim.kind!r} claims.")
            continue
        effect = None if claim.kind in seq.MARGIN_KINDS else c.effect
        rule = seq.Claimed(claim.kind, claim.margin, effect)
        decision = seq.decide(design, rule, _values(finished, c.row, claim.metric),
                              _values(finished, c.ref, claim.metric))
        if decision.state == seq.OPEN and min(tried[c.row], tried[c.ref]) >= a.max:
            decision = seq.Decision(seq.UNDECIDED, decision.seeds, decision.diff,
                                    decision.low, decision.high, decision.why)
        line = claim_line(claim.text, claim.metric, decision, a.alpha)
        if claim.metric != "top1":
            line += " (The queue adds seeds for top-1 claims only.)"
        lines.append(line)
    lines.append(_savings(spec, runs))
    return lines


def _savings(spec: GridSpec, runs: pd.DataFrame) -> str:
    a = spec.adaptive
    hours = point_hours(runs)
    fallback = sum(hours.values()) / len(hours) if hours else None
    used = {p.label: len(p.seeds) for p in spec.points}
    trained = sum(used.values())
    everywhere = a.max * len(spec.points)
    seeds = ", ".join(f"{label} {n}" for label, n in used.items())
    saved_h = 0.0
    for p in spec.points:
        h = hours.get(p.point_id, fallback)
        if h is None:
            saved_h = math.nan
            break
        saved_h += (a.max - len(p.seeds)) * h
    money = ("" if math.isnan(saved_h) else
             f" ≈ {saved_h:.2f} device-hours saved (each point's mean run time)")
    return (f"Seeds used: {seeds}; {trained} trainings against {everywhere} at max "
            f"everywhere, {everywhere - trained} fewer{money}.")
