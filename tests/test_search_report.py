"""The search report on synthetic trials: front, distance from the uniform curve, verdict."""

from __future__ import annotations

import pytest

from analysis.search_report import (
    SearchTrial,
    distance_from_curve,
    front_table,
    pareto_front,
    uniform_curve,
    verdict,
    write_report,
)


def _uniform(errors_by_r: dict[int, tuple[float, ...]]) -> list[SearchTrial]:
    # params fall as r grows, like SE-ResNet-20's (M)
    params = {2: 0.2860, 4: 0.2808, 8: 0.2767, 16: 0.2747, 32: 0.2737}
    return [SearchTrial(i, f"{r},{r},{r}", errs, params[r], 0.041 + params[r] / 100)
            for i, (r, errs) in enumerate(errors_by_r.items())]


CURVE = {2: (30.0, 30.4), 4: (31.0, 31.4), 8: (32.0, 32.4), 16: (33.0, 33.4), 32: (34.0, 34.4)}


def test_front_keeps_exactly_the_non_dominated_trials():
    trials = _uniform({2: (30.2,), 4: (31.2,), 8: (32.2,), 16: (33.2,), 32: (34.2,)})
    trials += [
        SearchTrial(10, "2,none,32", (31.0,), 0.2750, 0.0412),  # dominates r=8 and r=4
        SearchTrial(11, "4,4,none", (35.0,), 0.2800, 0.0412),  # dominated by r=4 and #10
        SearchTrial(12, "none,none,none", (36.0,), 0.2723, 0.0409),  # cheapest: on the front
    ]
    front = pareto_front(trials, "params")
    assert [t.number for t in front] == [12, 4, 3, 10, 0]
    # the uniform curve is the r = 2..32 trials by cost, never the plain network
    assert [t.uniform_r for t in uniform_curve(trials)] == [32, 16, 8, 4, 2]
    d, inside = distance_from_curve(trials[5], uniform_curve(trials))
    # at 0.2750 M the curve runs between r=16 (0.2747, 33.2) and r=8 (0.2767, 32.2): 33.05
    assert inside and d == pytest.approx(31.0 - 33.05)
    table = front_table(trials)
    assert table.count("\n") == 1 + len(front)
    assert "| 10 | 2 | none | 32 | 31.00 | 0.2750 |" in table
    assert "-2.05" in table


def test_verdict_yes_when_a_setting_beats_the_curve_by_more_than_the_noise():
    trials = _uniform(CURVE)  # std over two seeds: 0.28 points
    trials.append(SearchTrial(20, "2,none,32", (31.0, 31.4), 0.2750, 0.0412))  # 31.2 - 33.05
    text = verdict(trials)
    assert text.startswith("Yes: trial 20 (r = 2,none,32) is 1.85 points below")
    assert "0.28 points std" in text


def test_verdict_no_when_the_gain_is_within_the_noise():
    trials = _uniform(CURVE)
    trials.append(SearchTrial(20, "2,none,32", (32.8, 33.2), 0.2750, 0.0412))  # 33.0 - 33.05
    text = verdict(trials)
    assert text.startswith("No: no per-stage setting beat the uniform-r curve")
    assert "-0.05 points" in text


def test_verdict_with_one_seed_says_it_cannot_tell():
    trials = _uniform({r: (e[0],) for r, e in CURVE.items()})
    trials.append(SearchTrial(20, "2,none,32", (31.0,), 0.2750, 0.0412))
    assert verdict(trials).startswith("Cannot tell: one seed per trial")


def test_write_report_writes_table_figure_and_verdict(tmp_path):
    trials = _uniform(CURVE) + [SearchTrial(20, "2,none,32", (31.0, 31.4), 0.2750, 0.0412),
                                SearchTrial(21, "none,none,none", (36.0, 36.2), 0.2723, 0.0409)]
    out = write_report(trials, tmp_path, model="se_resnet50", title="synthetic", pruned=3)
    names = sorted(p.name for p in out["files"])
    assert names == ["pareto.md", "pareto.pdf", "pareto.png"]
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    md = (tmp_path / "pareto.md").read_text()
    assert "7 finished trials, 3 pruned." in md and out["verdict"] in md
    assert "31.20 ± 0.28" in md


def test_report_reads_a_real_search_study(tmp_path):
    import optuna

    from analysis.search_report import trials_from_study
    from senet.queue.search import (
        ask_config,
        cost,
        load_search,
        open_study,
        tell_pruned,
        tell_result,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = tmp_path / "s.toml"
    path.write_text(
        'model = "se_resnet20"\npreset = "fast"\ndataset = "builtin"\nseeds = [0, 1]\n'
        'trials = 8\npopulation_size = 4\n[space]\nreduction_stage1 = [2, 4, 8, 16, 32, "none"]\n'
        'reduction_stage2 = [4, 8, 16, 32, "none"]\nreduction_stage3 = [4, 8, 16, 32, "none"]\n'
    )
    search = load_search(path)
    study = open_study(search, f"sqlite:///{tmp_path}/r.db")
    for i in range(7):
        number, settings = ask_config(study, search)
        seeds = [30.0 + i, 31.0 + i]
        tell_result(study, number, sum(seeds) / 2, cost(search, settings), seed_errors=seeds)
    number, _ = ask_config(study, search)
    tell_pruned(study, number, last_epoch=1)
    trials = trials_from_study(study, search)
    # r = 2 is not in every stage's choices, so the seeded uniform trials start at r = 4
    assert [t.reduction for t in trials[:5]] == [
        "4,4,4", "8,8,8", "16,16,16", "32,32,32", "none,none,none"]
    assert trials[0].errors == (30.0, 31.0) and trials[0].params_m == pytest.approx(0.280766)
    assert trials[4].is_plain and trials[4].params_m == pytest.approx(0.272282)
    assert len(trials) == 7  # the pruned trial is not a finished one
    out = write_report(trials, tmp_path / "report", pruned=1)
    assert "7 finished trials, 1 pruned." in (tmp_path / "report" / "pareto.md").read_text()
    assert out["verdict"]
