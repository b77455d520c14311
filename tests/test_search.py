"""Searches: search files validate like grids, and the Optuna side hands out each trial once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import optuna
import pytest
import warm_procs
from optuna.trial import TrialState

from senet.errors import SenetError
from senet.queue.search import (
    OVER_BUDGET_ATTR,
    ask_config,
    cost,
    load_search,
    open_study,
    should_prune,
    tell_failed,
    tell_pruned,
    tell_result,
    trial_settings,
    uniform_params,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "experiments" / "search").glob("*.toml"))

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = """
model = "se_resnet20"
preset = "fast"
dataset = "builtin"
epochs = 1
subset = 200
seeds = [0]
trials = {trials}
population_size = 4
[space]
reduction_stage1 = [2, 4, 8, 16, 32, "none"]
reduction_stage2 = [4, 8, 16, 32, "none"]
reduction_stage3 = [4, 8, 16, 32, "none"]
"""


def _cheap_cost(settings: dict) -> float:
    """A stand-in for the params objective that needs no model build (spawned workers
    on a busy machine): more SE, smaller r, more cost."""
    reduction = settings.get("reduction")
    if reduction is None:
        return 0.0
    stages = str(settings.get("stages", "1,2,3")).split(",")
    values = [reduction] * len(stages) if isinstance(reduction, int) else [
        int(v) for v in str(reduction).split(",") if v != "none"]
    return sum(1.0 / v for v in values)


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_search_files_validate():
    names = {p.stem for p in SHIPPED}
    assert names == {"se_resnet20_stage_r", "se_resnet110_cifar10_stage_r",
                     "se_resnet50_imagenet_stage_r"}
    for path in SHIPPED:
        search = load_search(path)
        assert search.name == f"search/{path.stem}"
        assert search.trials >= 20
        # the paper's uniform settings and the plain network are all in every shipped space
        assert len(uniform_params(search)) == (5 if "imagenet" in path.stem else 6)
    cpu = load_search(REPO / "experiments/search/se_resnet20_stage_r.toml")
    # judged after epoch 3 of 4: at epoch 1 the error is 54-82 % whatever the network
    assert cpu.pruner()._n_warmup_steps == 3 and cpu.seeds == [0, 1]
    imagenet = load_search(REPO / "experiments/search/se_resnet50_imagenet_stage_r.toml")
    assert imagenet.stages == (2, 3, 4, 5)
    assert set(imagenet.space) >= {f"reduction_stage{s}" for s in (2, 3, 4, 5)}


SPACE = BASE.format(trials=10).split("[space]")[1]
MISTAKES = [
    # (extra top-level lines, [space] body, key named in the error, fragment of the message)
    ("colour = 'red'\n", SPACE, "colour", "unknown key 'colour'"),
    ("stages = '1,2'\n", SPACE, "stages", "reduction_stageN = [\"none\"]"),
    ("seed = 3\n", SPACE, "seed", "not a grid setting"),
    ("objectives = ['error', 'latency']\n", SPACE, "objectives", "expected [\"error\""),
    ("", SPACE + "reduction_stage4 = [4]\n", "space.reduction_stage4", "no such stage"),
    ("", SPACE + "ratio = [4]\n", "space.ratio", "unknown key 'ratio'"),
    ("", SPACE + "squeeze = ['avg', 'median']\n", "space.squeeze", "valid values are"),
    ("", SPACE.replace("[2, 4,", "[0, 4,"), "space.reduction_stage1", "integer >= 1 or"),
    ("", SPACE.replace("[2, 4,", "[4, 4,"), "space.reduction_stage1", "repeated choice"),
    ("", "\n".join(f'reduction_stage{s} = ["none"]' for s in (1, 2, 3)), "space",
     "every stage is none only"),
    ("reduction = 8\n", "squeeze = ['avg', 'max']\n", "space", "no reduction_stageN key"),
]


@pytest.mark.parametrize("extra,space,key,fragment", MISTAKES)
def test_mistakes_are_one_line_errors_naming_file_and_key(tmp_path, extra, space, key, fragment):
    top = BASE.format(trials=10).split("[space]")[0]
    path = _write(tmp_path, top + extra + "[space]\n" + space)
    with pytest.raises(SenetError) as err:
        load_search(path)
    message = str(err.value)
    assert f"s.toml:{key}: " in message and fragment in message, message
    assert "\n" not in message


def test_zero_trials_is_refused(tmp_path):
    with pytest.raises(SenetError, match=r"s.toml:trials: expected an integer >= 1, got 0"):
        load_search(_write(tmp_path, BASE.format(trials=0)))


def test_empty_space_and_a_plain_model_are_refused(tmp_path):
    with pytest.raises(SenetError, match=r"s.toml:space: missing or empty"):
        load_search(_write(tmp_path, BASE.format(trials=5).split("[space]")[0]))
    text = BASE.format(trials=5).replace('model = "se_resnet20"', 'model = "resnet20"')
    with pytest.raises(SenetError, match=r"s.toml:model: a search needs an se_ model"):
        load_search(_write(tmp_path, text))


def test_trial_settings_are_canonical_model_settings(tmp_path):
    search = load_search(_write(tmp_path, BASE.format(trials=5)))
    one_stage = trial_settings(search, {"reduction_stage1": 4, "reduction_stage2": "none",
                                        "reduction_stage3": "none"})
    assert one_stage["reduction"] == 4 and one_stage["stages"] == "1"
    uniform = trial_settings(search, {f"reduction_stage{s}": 16 for s in (1, 2, 3)})
    assert uniform["reduction"] == 16 and "stages" not in uniform
    mixed = trial_settings(search, {"reduction_stage1": 2, "reduction_stage2": "none",
                                    "reduction_stage3": 32})
    assert mixed["reduction"] == "2,none,32" and mixed["stages"] == "1,3"
    plain = trial_settings(search, {f"reduction_stage{s}": "none" for s in (1, 2, 3)})
    assert plain["model"] == "resnet20" and "reduction" not in plain
    # params in millions: the plain net is smallest, r = 2 in stage 1 costs 3 * 272 more
    assert cost(search, plain) == pytest.approx(0.272282)
    assert cost(search, uniform) == pytest.approx(0.274655)


def test_the_paper_settings_come_first_and_the_study_is_reproducible(tmp_path):
    search = load_search(_write(tmp_path, BASE.format(trials=12)))

    def run(storage: str) -> list[str]:
        study = open_study(search, storage)
        seen = []
        while (asked := ask_config(study, search)) is not None:
            number, settings = asked
            seen.append(study.get_trials()[number].user_attrs["senet.reduction"])
            error = 0.1 * settings.get("reduction", 64) if isinstance(
                settings.get("reduction"), int) else 0.5
            tell_result(study, number, error, _cheap_cost(settings))
        return seen

    first = run(f"sqlite:///{tmp_path}/a.db")
    # r = 2 is not a choice of stages 2-3 here, so the seeded settings start at r = 4
    assert first[:5] == ["4,4,4", "8,8,8", "16,16,16", "32,32,32", "none,none,none"]
    assert len(first) == 12
    assert run(f"sqlite:///{tmp_path}/b.db") == first
    # opening an existing study does not seed it again
    study = open_study(search, f"sqlite:///{tmp_path}/a.db")
    assert len(study.get_trials()) == 12
    assert ask_config(study, search) is None


def _worker(search_path: str, storage: str, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = load_search(search_path)
    study = open_study(search, storage)
    asked = []
    while (got := ask_config(study, search)) is not None:
        number, settings = got
        asked.append(number)  # one "training" per trial handed out
        tell_result(study, number, 0.5, _cheap_cost(settings))
    out.put(asked)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_concurrent_workers_never_share_a_trial_nor_pass_the_budget(tmp_path, kind):
    budget, workers = 14, 4
    path = _write(tmp_path, BASE.format(trials=budget))
    # Through the queue's storage opener: plain Optuna SQLite storage handed trial 4 (an
    # enqueued one) to two workers in an earlier run of this test.
    storage = (f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else str(tmp_path / "j.log"))
    open_study(load_search(path), storage)
    ctx = warm_procs.context()  # forked from a warm interpreter (tests/warm_procs.py)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(path), storage, out))
             for _ in range(workers)]
    for p in procs:
        p.start()
    asked = [n for _ in procs for n in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(asked) == list(range(budget))  # every trial once, none twice, none over
    study = open_study(load_search(path), storage)  # loads: the study exists
    real = [t for t in study.get_trials() if not t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert len(real) == budget
    assert all(t.state == TrialState.COMPLETE for t in real)
    assert all(t.state == TrialState.FAIL for t in study.get_trials()
               if t.user_attrs.get(OVER_BUDGET_ATTR))


def test_pruned_and_failed_trials_are_recorded(tmp_path):
    search = load_search(_write(tmp_path, BASE.format(trials=6)))
    study = open_study(search, f"sqlite:///{tmp_path}/p.db")
    first, _ = ask_config(study, search)
    second, _ = ask_config(study, search)
    assert should_prune(study, first, 1, 0.4) is False  # nothing to compare with yet
    tell_pruned(study, first, last_epoch=1)
    tell_failed(study, second, "non-finite loss")
    trials = study.get_trials()
    assert trials[first].state == TrialState.PRUNED
    assert trials[first].user_attrs["senet.last_epoch"] == 1
    assert trials[first].intermediate_values == {1: 0.4}
    assert trials[second].state == TrialState.FAIL
    assert trials[second].user_attrs["senet.fail_reason"] == "non-finite loss"


def test_should_prune_compares_with_completed_trials_at_the_same_epoch(tmp_path):
    search = load_search(_write(tmp_path, BASE.format(trials=12)))
    study = open_study(search, f"sqlite:///{tmp_path}/m.db")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)
    for final in (0.30, 0.32, 0.34, 0.36):
        number, settings = ask_config(study, search)
        for epoch, err in ((1, 0.9), (2, final + 0.2), (3, final)):
            assert should_prune(study, number, epoch, err, pruner) is False
        tell_result(study, number, final, cost(search, settings))
    bad, _ = ask_config(study, search)
    assert should_prune(study, bad, 1, 0.95, pruner) is False  # epoch 1 is warm-up
    assert should_prune(study, bad, 2, 0.80, pruner) is True  # median at epoch 2 is 0.53
    good, _ = ask_config(study, search)
    assert should_prune(study, good, 2, 0.50, pruner) is False
    assert should_prune(study, good, 3, 0.31, pruner) is False
    assert study.get_trials()[bad].intermediate_values == {1: 0.95, 2: 0.80}


def test_grids_take_per_stage_reduction_and_see_uniform_lists_as_duplicates(tmp_path):
    from senet.settings.grid import load_grid

    grid = _write(tmp_path, 'model = "se_resnet20"\npreset = "fast"\ndataset = "builtin"\n'
                            '[axes]\nreduction = ["4,8,none", [2, "none", 32]]\n', "g.toml")
    assert [p.label for p in load_grid(grid).points] == [
        "reduction=4,8,none", "reduction=[2, 'none', 32]"]
    same = _write(tmp_path, 'model = "se_resnet20"\npreset = "fast"\ndataset = "builtin"\n'
                            '[axes]\nreduction = [16, "16,16,16"]\n', "same.toml")
    with pytest.raises(SenetError, match="train the same settings"):
        load_grid(same)
    clash = _write(tmp_path, 'model = "se_resnet20"\npreset = "fast"\ndataset = "builtin"\n'
                             'stages = "1,3"\n[axes]\nreduction = ["4,8,none"]\n', "clash.toml")
    with pytest.raises(SenetError, match=r"clash.toml:stages: option stages='1,3' disagrees"):
        load_grid(clash)


def test_plan_prices_a_search_as_trials_times_seeds(tmp_path):
    from senet.queue.search import as_grid, is_search_file
    from senet.settings.identity import key_of, resolved_settings

    path = _write(tmp_path, BASE.format(trials=9).replace("seeds = [0]", "seeds = [0, 1]"))
    assert is_search_file(path) and not is_search_file(REPO / "experiments" / "demo.toml")
    grid = as_grid(load_search(path))
    assert (len(grid.points), grid.seeds) == (9, [0, 1])
    labels = [p.label for p in grid.points]
    assert labels[:5] == ["r=4,4,4", "r=8,8,8", "r=16,16,16", "r=32,32,32",
                          "r=none,none,none"]  # r = 2 is not in stages 2 and 3 here
    keys = {key_of(resolved_settings(p.settings), 0) for p in grid.points}
    assert len(keys) == 9  # distinct settings: the plan counts 9 x 2 trainings


def test_worker_samplers_do_not_replay_the_same_settings(tmp_path):
    storage = f"sqlite:///{tmp_path}/r.db"
    search = load_search(_write(tmp_path, BASE.format(trials=30)))
    study = open_study(search, storage)
    while study.get_trials(states=(TrialState.WAITING,)):
        ask_config(study, search)  # the paper's settings first

    def worker_draws(reseed: bool) -> list:
        mine = open_study(search, storage)  # what each worker process opens
        if reseed:
            mine.sampler.reseed_rng()  # as senet.queue.search.opened does
        return [ask_config(mine, search)[1] for _ in range(3)]

    assert worker_draws(False) == worker_draws(False)  # the replay: same seed, same draws
    assert worker_draws(True) != worker_draws(True)
