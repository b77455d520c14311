"""Every claim of every shipped grid can be judged: its rows exist in the grid, its kind
has a rule in analysis/verdicts.py, and it says what the paper's own numbers say."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.gridspec import from_grid
from analysis.paper import Claim, load_paper_numbers
from analysis.tables import build_table
from analysis.verdicts import JUDGEABLE
from senet.settings.grid import load_grid

REPO = Path(__file__).resolve().parents[1]
GRIDS = sorted(p for p in (REPO / "experiments").rglob("*.toml") if p.parent.name != "search")


def _one_seed_each(spec) -> pd.DataFrame:
    """One finished seed per point, so each claim's rows resolve through the table code."""
    rows = [
        {"run_id": f"{p.point_id}-0", "experiment_id": "1", "status": "FINISHED",
         "start_time": i, "end_time": i + 1, "grid": spec.name, "point": p.point_id,
         "seed": p.seeds[0], "label": p.label, "fail_reason": "",
         "metric.final_val_top1_err": 20.0 + i, "metric.final_val_top5_err": 5.0 + i}
        for i, p in enumerate(spec.points)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_the_walk_covers_every_grid():
    names = {p.relative_to(REPO / "experiments").with_suffix("").as_posix() for p in GRIDS}
    assert {"imagenet/gate", "imagenet/squeeze", "imagenet/integration", "imagenet/se3x3",
            "cifar10/main", "cifar100/main", "demo"} <= names
    assert len(GRIDS) == 30


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_claim_of_a_shipped_grid_has_its_rows_and_a_rule(path):
    spec = from_grid(load_grid(path))
    paper, _ = load_paper_numbers().lookup(spec.paper_table, spec.dataset)
    claims = [*(paper.claims if paper else ()), *spec.claims]
    assert all(c.kind in JUDGEABLE for c in claims)
    table = build_table(spec, _one_seed_each(spec), load_paper_numbers())
    # An adaptive grid's table adds the seed procedure's lines after the verdicts.
    assert len(table.verdicts) >= len(claims)
    assert len(table.verdicts) == len(claims) or spec.adaptive is not None
    for line in table.verdicts[:len(claims)]:
        assert "cannot be judged" not in line, line
        # one seed per row decides nothing, and says how many seeds would
        assert ": not decided at 1 seed per row" in line, line
        if spec.dataset in ("imagenet", "cifar10", "cifar100", "builtin"):
            assert "seeds per row would decide it" in line or "No seed count" in line, line


def test_the_imagenet_ablations_judge_against_their_own_resnet50_row(tmp_path, monkeypatch):
    for name in ("gate", "squeeze", "integration", "se3x3", "reduction", "stages",
                 "nosqueeze"):
        grid = load_grid(f"imagenet/{name}")
        plain = [p for p in grid.points if p.model == "resnet50"]
        assert [p.settings["preset"] for p in plain] == ["imagenet-ablation"], name
    # Shared by every ablation grid, so adding the row to four more costs no training.
    from senet.queue.plan import make_plan

    grids = [load_grid(f"imagenet/{n}") for n in ("gate", "squeeze", "integration", "se3x3")]
    monkeypatch.chdir(tmp_path)  # no queue here: a plan before queueing
    plan = make_plan(grids, storage_url=None, tracking_uri="sqlite:////nonexistent/m.db")
    plain = [t for t in plan.trainings.values() if t.model == "resnet50"]
    assert len(plain) == 1 and len(plain[0].grids) == 4


def _holds_on_paper_numbers(claim: Claim, value) -> bool | None:
    """The claim read off the paper's point estimates; None where it prints no number."""
    values = [value(name) for name in claim.names]
    if any(v is None for v in values):
        return None
    if claim.kind == "not_monotone":
        return any(values[i] > values[j] for i in range(len(values))
                   for j in range(i + 1, len(values)))
    diff = values[0] - values[1]
    return {"better_than": diff < 0, "worse_than": diff > 0, "within": diff < claim.margin,
            "similar_to": abs(diff) < claim.margin}[claim.kind]


def test_every_paper_claim_is_what_the_paper_prints():
    checked = 0
    for table in load_paper_numbers().tables:
        rows = {r.id: r for r in table.rows}
        for claim in table.claims:
            assert set(claim.names) <= set(rows), (table.key, claim)

            def value(name, claim=claim, rows=rows):
                number = getattr(rows[name], claim.metric)
                return None if number is None or math.isnan(number) else number

            holds = _holds_on_paper_numbers(claim, value)
            assert holds in (True, None), (table.table, claim.text)
            checked += holds is True
    assert checked == 32  # all 33 but Sec. 4's stage-5 claim, which has no numbers
