"""The search report on synthetic trials: front, distance from the uniform curve, verdict."""

from __future__ import annotations

import pytest

from analysis.search_report import (
    SearchTrial,
    distance_from_curve,
    front_table,
    judge_search,
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


def test_verdict_yes_when_the_interval_over_seeds_lies_below_the_curve():
    trials = _uniform(CURVE)  # std over two seeds: 0.28 points
    trials.append(SearchTrial(20, "2,none,32", (31.0, 31.4), 0.2750, 0.0412))  # 31.2 - 33.05
    assert verdict(trials) == (
        "Yes: trial 20 (r = 2,none,32) is 1.85 points below the uniform-r curve at its cost "
        "(95.0 % interval [-2.99, -0.71] over seeds, Bonferroni over 1 per-stage trial).")


def test_verdict_not_decided_when_the_interval_reaches_the_curve():
    trials = _uniform(CURVE)
    trials.append(SearchTrial(20, "2,none,32", (32.8, 33.2), 0.2750, 0.0412))  # 33.0 - 33.05
    text = verdict(trials)
    assert text.startswith("Not decided: no per-stage setting's interval lies below the "
                           "uniform-r curve; the lowest, trial 20 (r = 2,none,32), is -0.05")
    assert "[-1.19, +1.09]" in text


def test_the_best_of_several_trials_pays_for_the_choice():
    """1.2 points below the curve clears a 95 % interval, not the 99 % that picking the
    best of five per-stage trials calls for (Bonferroni)."""
    trials = _uniform(CURVE)
    trials.append(SearchTrial(20, "2,none,32", (31.65, 32.05), 0.2750, 0.0412))
    alone = verdict(trials)
    assert alone.startswith("Yes: trial 20") and "Bonferroni over 1 per-stage trial" in alone
    trials += [SearchTrial(21 + i, f"{r},none,32", (34.0, 34.4), 0.2750 + i / 1e4, 0.0412)
               for i, r in enumerate((4, 8, 16, 64))]
    many = verdict(trials)
    assert many.startswith("Not decided:") and "99.0 % interval" in many


def test_verdict_with_one_seed_is_not_decided():
    trials = _uniform({r: (e[0],) for r, e in CURVE.items()})
    trials.append(SearchTrial(20, "2,none,32", (31.0,), 0.2750, 0.0412))
    assert verdict(trials).startswith("Not decided: one seed per trial gives no interval")


def test_the_table_shows_the_trial_the_verdict_names_and_says_the_curve_bends():
    bent = {**CURVE, 8: (34.0, 34.4)}  # r = 8 above r = 4 and r = 16
    trials = _uniform(bent)
    # dominated by r = 16 (cheaper, and 0.3 lower), yet 0.7 below the curve at its cost
    trials.append(SearchTrial(20, "2,4,16", (33.3, 33.7), 0.2767, 0.0412))
    line, named = judge_search(trials)
    assert named.number == 20 and "not monotone in cost" in line
    assert 20 not in [t.number for t in pareto_front(trials)]
    table = front_table(trials, named=named)
    assert "| 20 | 2 | 4 | 16 | 33.50 ± 0.28 |" in table
    assert "(named by the verdict; not on the front)" in table


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
