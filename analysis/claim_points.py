"""A grid's claims resolved to its points, each with the difference it expects.

The paper's claims name paper rows (matched to grid points by their settings) and a
grid file's own claims name point labels; both become a pair of point ids here, which
is what `senet queue` records for adaptive seeds and what `senet plan --seeds` prices.
A claim's expected effect (mean(row) - mean(ref), in error points) is the paper's
difference of the two rows, or the ``effect = ...`` a grid file's claim gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.gridspec import GridSpec, from_grid
from analysis.paper import Claim, PaperBook, PaperTable
from senet.errors import SenetError


@dataclass(frozen=True)
class PointClaim:
    claim: Claim
    row: str  # point id
    ref: str  # point id
    effect: float | None = None
    effect_from: str = ""  # where the effect comes from, in words

    def record(self) -> dict[str, Any]:
        """The queue's copy (senet.queue.adaptive.A_CLAIMS)."""
        c = self.claim
        return {"text": c.text, "row": self.row, "ref": self.ref, "kind": c.kind,
                "metric": c.metric, "margin": c.margin, "effect": self.effect}


def paper_rows(spec: GridSpec, paper: PaperTable | None) -> dict[str, str]:
    """paper row id -> point id, matched on each point's settings with defaults filled
    in (before any run exists; the tables match on the runs' params too)."""
    from analysis.tables import _match_settings

    if paper is None:
        return {}
    matched = {p.point_id: paper.match(_match_settings(p, pd.DataFrame())) for p in spec.points}
    return {r.id: pid for pid, r in reversed(matched.items()) if r is not None}


def resolve(spec: GridSpec, paper: PaperTable | None, by_paper_row: dict[str, str]
            ) -> tuple[list[PointClaim], list[str]]:
    """(the claims both of whose rows the grid has, a note per claim it cannot place)."""
    found: list[PointClaim] = []
    notes: list[str] = []
    for claim in paper.claims if paper is not None else ():
        row, ref = by_paper_row.get(claim.row), by_paper_row.get(claim.ref)
        if row is None or ref is None:
            notes.append(f"{claim.text}: the grid has no row for "
                         f"{claim.row if row is None else claim.ref!r}")
            continue
        effect, where = _paper_effect(paper, claim)
        found.append(PointClaim(claim, row, ref, effect, where))
    by_label = {p.label: p.point_id for p in spec.points}
    for claim, effect in zip(spec.claims, _file_effects(spec), strict=True):
        found.append(PointClaim(claim, by_label[claim.row], by_label[claim.ref], effect,
                                "given in the grid file" if effect is not None else ""))
    return found, notes


def for_grid(grid: Any, book: PaperBook) -> tuple[GridSpec, list[PointClaim], list[str]]:
    """A senet.settings.grid.Grid's spec, claims and notes, with no runs yet."""
    spec = from_grid(grid)
    paper, _ = book.lookup(spec.paper_table, spec.dataset)
    claims, notes = resolve(spec, paper, paper_rows(spec, paper))
    return spec, claims, notes


def _paper_effect(paper: PaperTable, claim: Claim) -> tuple[float | None, str]:
    row, ref = paper.row(claim.row), paper.row(claim.ref)
    a = getattr(row, claim.metric, None) if row else None
    b = getattr(ref, claim.metric, None) if ref else None
    if a is None or b is None:
        return None, ""
    return round(a - b, 4), f"{paper.table or paper.key}: {a:g} - {b:g}"


def _file_effects(spec: GridSpec) -> list[float | None]:
    """The optional `effect = ...` of each of the grid file's claims, in file order."""
    if not spec.claims or not spec.claim_tables:
        return [None] * len(spec.claims)
    raw = spec.claim_tables
    effects: list[float | None] = []
    for entry in raw:
        value = entry.get("effect")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SenetError(f"{spec.path}: claim {entry.get('claim')!r}: effect {value!r} "
                             "is not a number; give the difference it expects in error points")
        effects.append(None if value is None else float(value))
    return effects
