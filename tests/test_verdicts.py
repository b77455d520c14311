"""Tables against the paper: verdict lines per claim, paper-only rows, GFLOPs digits, the
top-5 rule, and the figure defaults. Runs are plain DataFrames in fetch_runs' layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import figures
from analysis.figures import plot_intra_class, training_curves_figure
from analysis.gridspec import GridSpec, PointSpec, from_grid
from analysis.paper import Claim, load_paper_numbers, parse_paper_numbers
from analysis.table_render import fmt_gmacs, to_markdown
from analysis.tables import build_table
from analysis.verdicts import Side, judge
from senet.errors import SenetError
from senet.excitation.stats import BlockStats, ExcitationStats
from senet.settings.grid import load_grid

SQUEEZE = GridSpec(
    name="imagenet/squeeze", title="squeeze", dataset="imagenet",
    paper_table="imagenet/squeeze", baseline="avg",
    points=(PointSpec("max", "Max", {"model": "se_resnet50", "squeeze": "max"}, (0, 1, 2)),
            PointSpec("avg", "Avg", {"model": "se_resnet50", "squeeze": "avg"}, (0, 1, 2)),
            PointSpec("r50", "ResNet-50", {"model": "resnet50"}, (0, 1, 2))),
)  # fmt: skip
# (top-1, top-5) per seed: Max is worse than Avg, Avg better than ResNet-50, both clearly.
ERRORS = {
    "max": [(22.6, 6.1), (22.7, 6.2), (22.5, 6.0)],
    "avg": [(22.3, 6.0), (22.2, 6.0), (22.35, 6.1)],
    "r50": [(23.3, 6.5), (23.2, 6.6), (23.25, 6.55)],
}


def fake_runs(spec: GridSpec, errors: dict, num_classes: int = 1000, gmacs: float = 3.8659):
    labels = {p.point_id: p.label for p in spec.points}
    rows = [
        {"run_id": f"{pid}-{seed}", "experiment_id": "1", "status": "FINISHED",
         "start_time": seed, "end_time": seed + 1, "grid": spec.name, "point": pid,
         "seed": seed, "label": labels[pid], "fail_reason": "",
         "metric.final_val_top1_err": t1, "metric.final_val_top5_err": t5,
         "metric.gmacs": gmacs, "metric.params": 28.1e6, "param.num_classes": str(num_classes)}
        for pid, values in errors.items()
        for seed, (t1, t5) in enumerate(values)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_verdicts_with_three_seeds_say_direction_and_significance():
    table = build_table(SQUEEZE, fake_runs(SQUEEZE, ERRORS), load_paper_numbers())
    assert table.verdicts == [
        "max squeeze is worse than avg (top-1 error): holds (Max 22.60 vs Avg 22.28, "
        "Δ +0.32); significant at 95 % (Welch t-test, p = 0.014; 3 seeds vs 3).",
        "SE with avg squeeze beats ResNet-50 (top-1 error): holds (Avg 22.28 vs ResNet-50 "
        "23.25, Δ -0.97); significant at 95 % (Welch t-test, p = 0.000147; 3 seeds vs 3).",
    ]
    md = to_markdown(table)
    assert "Verdicts on the claims:\n- max squeeze is worse than avg" in md


def test_verdicts_with_one_seed_cannot_judge_significance():
    runs = fake_runs(SQUEEZE, ERRORS)
    table = build_table(SQUEEZE, runs[runs["seed"] == 0], load_paper_numbers())
    assert table.verdicts[0] == (
        "max squeeze is worse than avg (top-1 error): holds (Max 22.60 vs Avg 22.30, "
        "Δ +0.30); with 1 seed per row, significance cannot be judged."
    )


def test_verdict_against_the_claim_and_not_significant():
    worse = Claim("the ReLU gate is worse than the baseline", "relu", "r50", "worse_than")
    text = judge(worse, Side("ReLU", [22.0, 22.4, 22.2]), Side("ResNet-50", [22.3, 22.1, 22.5]))
    assert text.startswith("the ReLU gate is worse than the baseline (top-1 error): does not "
                           "hold (ReLU 22.20 vs ResNet-50 22.30, Δ -0.10); not significant")
    flipped = judge(worse, Side("ReLU", [21.0, 21.1, 21.2]), Side("ResNet-50", [22.3, 22.4]))
    assert "does not hold" in flipped
    assert "significant at 95 %, in the opposite direction" in flipped
    within = Claim("stage 5 costs < 0.1", "a", "b", "within", "top5", 0.1)
    near = judge(within, Side("A", [6.00, 6.02, 6.04]), Side("B", [6.00, 6.01, 6.02]))
    assert "holds (A 6.02 vs B 6.01, Δ +0.01, margin 0.1); significant at 95 %" in near
    assert "no finished seed of B" in judge(within, Side("A", [6.0]), Side("B", []))


def test_grid_claims_are_data_in_the_grid_file(tmp_path):
    path = tmp_path / "experiments" / "builtin" / "claims.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        'dataset = "builtin"\npreset = "fast"\nmodel = "se_resnet20"\nseeds = [0, 1]\n'
        'claims = [{ claim = "SE beats ResNet-20", row = "SE", better_than = "ResNet-20" }]\n'
        '[[variants]]\nlabel = "ResNet-20"\nmodel = "resnet20"\n'
        '[[variants]]\nlabel = "SE"\nreduction = 16\n'
    )
    spec = from_grid(load_grid(path))
    assert spec.claims == (Claim("SE beats ResNet-20", "SE", "ResNet-20", "better_than"),)
    ids = {p.label: p.point_id for p in spec.points}
    runs = fake_runs(spec, {ids["ResNet-20"]: [(30.0, 1.0), (31.0, 1.0)],
                            ids["SE"]: [(25.0, 1.0), (26.0, 1.0)]}, num_classes=10)
    table = build_table(spec, runs, load_paper_numbers())
    assert table.verdicts[0].startswith("SE beats ResNet-20 (top-1 error): holds (SE 25.50 vs "
                                        "ResNet-20 30.50, Δ -5.00); significant at 95 %")
    path.write_text(path.read_text().replace('row = "SE"', 'row = "SE (r=4)"'))
    with pytest.raises(SenetError, match="names no point 'SE \\(r=4\\)'"):
        from_grid(load_grid(path))


def test_footnote_2_reference_rows_and_missing_paper_numbers():
    book = load_paper_numbers()
    table = build_table(SQUEEZE, fake_runs(SQUEEZE, ERRORS), book)
    shown = table.paper_rows.set_index("paper_label")
    assert shown.loc["ResNet-50, footnote 2 (fixed 270-epoch schedule)", "paper_top1"] == 23.21
    assert shown.loc["SE-ResNet-50, footnote 2 (fixed 270-epoch schedule)", "paper_top5"] == 6.00
    assert "| paper: ResNet-50, footnote 2 (fixed 270-epoch schedule) | — |" in to_markdown(table)
    for key in ("reduction", "gate", "stages", "integration", "se3x3", "nosqueeze"):
        paper, _ = book.lookup(f"imagenet/{key}", "imagenet")
        assert {"resnet50_fixed", "se_resnet50_fixed"} <= {r.id for r in paper.rows}, key
    t15, _ = book.lookup("imagenet/se3x3", "imagenet")
    assert (t15.row("standard").gflops, t15.row("standard").params_m) == (3.87, 28.1)
    assert t15.row("3x3").params_m == 25.8
    t16, _ = book.lookup("imagenet/nosqueeze", "imagenet")
    assert t16.row("nosqueeze").params_m == 28.1
    t2, _ = book.lookup("imagenet/main", "imagenet")
    assert t2.table == "Table 2" and t2.match({"model": "se_resnet152"}).top1 == 21.57
    # A paper-only row never stands for a grid point, even one with the same settings.
    assert t15.match({"model": "resnet50"}).label == "ResNet-50 (no SE)"


def test_every_claim_names_rows_of_its_table():
    for table in load_paper_numbers().tables:
        ids = {r.id for r in table.rows}
        for claim in table.claims:
            assert {claim.row, claim.ref} <= ids, (table.key, claim)
    with pytest.raises(SenetError, match="one of better_than, worse_than, within"):
        parse_paper_numbers(
            '[source]\npaper = "p"\nversion = "v"\n[[tables]]\nkey = "k"\n'
            'claims = [{ claim = "x", row = "a" }]\n'
        )


def test_a_paper_table_without_numbers_is_noted():
    spec = GridSpec(**{**SQUEEZE.__dict__, "paper_table": "activation"})
    table = build_table(spec, fake_runs(spec, ERRORS), load_paper_numbers())
    assert any(n.startswith("paper_table = 'activation' names a table with no numbers")
               for n in table.notes)
    assert "names a table with no numbers" in to_markdown(table)


def test_gflops_have_three_decimals():
    assert fmt_gmacs(3.8659) == "3.866" and fmt_gmacs(3.8715) == "3.872"
    assert fmt_gmacs(0.2542) == "0.254" and fmt_gmacs(0.0041) == "0.0041"
    table = build_table(SQUEEZE, fake_runs(SQUEEZE, ERRORS), load_paper_numbers())
    assert "| 3.866 |" in to_markdown(table)


@pytest.mark.parametrize("classes, shown", [(10, False), (11, True), (1000, True)])
def test_top5_columns_only_above_ten_classes(classes, shown):
    table = build_table(SQUEEZE, fake_runs(SQUEEZE, ERRORS, num_classes=classes),
                        load_paper_numbers())  # fmt: skip
    md = to_markdown(table)
    header = next(line for line in md.splitlines() if line.startswith("| variant"))
    assert ("top-5" in header) is shown
    assert ("Top-5 is left out" in md) is not shown
    assert "top-1 err" in header


def test_one_epoch_curves_draw_points():
    history = pd.DataFrame({
        "label": ["A", "A", "B", "B"], "seed": [0, 0, 0, 0],
        "key": ["val_top1_err", "train_loss"] * 2, "step": [1, 1, 1, 1],
        "value": [40.0, 1.5, 35.0, 1.2],
    })  # fmt: skip
    fig = training_curves_figure(history)
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if len(ln.get_xdata()) == 1]
    assert len(lines) >= 4 and all(ln.get_marker() == "o" for ln in lines)


def _stats(classes: list[str]) -> ExcitationStats:
    rng = np.random.default_rng(0)
    stats = ExcitationStats(classes=classes)
    k = len(classes)
    mean = rng.uniform(0.1, 0.9, (k, 8)).astype(np.float32)
    stats.blocks["SE_1_1"] = BlockStats(mean=mean, std=mean / 10, count=np.full(k, 5),
                                        all_mean=mean.mean(0))  # fmt: skip
    return stats


def test_fig7_defaults_to_goldfish_and_plane_and_says_plane_is_assumed(tmp_path, monkeypatch):
    stats = _stats(["n02110958", "n09246464", "n02690373", "n01443537"])
    paths = plot_intra_class(stats, None, None, tmp_path / "intra")
    assert paths[0].stat().st_size > 10_000
    drawn = []  # the figure as it would be saved: its rows' classes and its title
    monkeypatch.setattr(figures, "save_figure", lambda fig, out: drawn.append(fig) or [])
    plot_intra_class(stats, None, None, tmp_path / "again")
    titles = [ax.get_title() for ax in drawn[0].axes]
    assert titles[0] == "SE_1_1, goldfish" and titles[1] == "SE_1_1, airliner"
    assert "airliner (n02690373), an assumption" in drawn[0]._suptitle.get_text()
