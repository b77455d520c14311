"""senet search: start (or extend) a per-stage reduction search, or write its report."""

from __future__ import annotations

import argparse

from senet.commands.common import add_stores

HELP = "start a search of per-stage reduction ratios for `senet work`, or report on it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="SEARCH",
                   help="search file: a name under experiments/ (e.g. "
                        "search/se_resnet20_stage_r) or a path to a search .toml")
    p.add_argument("--trials", type=int, metavar="N",
                   help="the budget: trials asked in all (default: the file's `trials`); "
                        "may be raised later by running the command again")
    add_stores(p, "MLflow tracking URI for the search's runs "
                  "(default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--report", action="store_true",
                   help="write the Pareto table, figure (PNG, PDF) and verdict instead")
    p.add_argument("--out", metavar="DIR",
                   help="report folder (default results/search/<name>)")


def run(args: argparse.Namespace) -> int:
    import optuna

    from senet.errors import SenetError
    from senet.queue.search import load_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = load_search(args.file)
    if args.trials is not None:
        if args.trials < 1:
            raise SenetError(f"--trials {args.trials}: expected a number of trials >= 1")
        search.trials = args.trials
    if args.report:
        return report(search, args)
    return start(search, args)


def start(search, args: argparse.Namespace) -> int:
    from optuna.trial import TrialState

    from senet.data.load import check_dataset
    from senet.queue import search as s
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage
    from senet.tracking import store as t
    from senet.urls import with_driver

    classes = check_dataset(search.settings.get("dataset", "builtin"))  # before any record
    tracking_uri = with_driver(t.absolute_tracking_uri(t.resolve_uri(args.tracking_uri)))
    t.check_tracking(tracking_uri)
    storage = open_storage(args.storage)
    study = s.open_study(search, storage)  # the creator enqueues the paper's settings
    if args.trials is not None and study.user_attrs.get(s.BUDGET_ATTR) != args.trials:
        study.set_user_attr(s.BUDGET_ATTR, args.trials)
    search.trials = int(study.user_attrs.get(s.BUDGET_ATTR, search.trials))
    queue, _ = q.GridQueue.open_or_create(storage, s.queue_name(search))
    attrs = queue.attrs()
    meta = {t.A_GRID: queue.name, t.A_TITLE: search.title,
            t.A_GRID_FILE: str(search.path), s.A_SEARCH_FILE: str(search.path)}
    for key, value in meta.items():
        if attrs.get(key) != value:
            queue.set_attr(key, value)
    # Experiment and parent run first: workers skip a queue until they exist.
    tracking = t.ensure_grid_tracking(queue, tracking_uri, str(search.path))
    from senet.tracking.views import ensure_results_view, shows_top5, view_lines

    ensure_results_view(t.open_client(tracking_uri), tracking[t.A_EXPERIMENT_ID],
                        shows_top5(classes))
    # The first generation: the paper's uniform settings, waiting in the study since
    # it was created, get their tickets now; the sampler proposes the rest as workers ask.
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    asked = [n for _ in waiting if (n := s.ask_and_enqueue(queue, search, study)) is not None]
    recovered = s.requeue_orphans(queue, search, study)
    if asked or recovered:
        t.set_parent_status(tracking_uri, tracking[t.A_PARENT_RUN], "RUNNING")
    trials = study.get_trials(deepcopy=False)
    states = {st: sum(1 for tr in trials if tr.state == st and
                      not tr.user_attrs.get(s.OVER_BUDGET_ATTR))
              for st in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)}
    print(f"{queue.name}: budget {search.trials} trials x {len(search.seeds)} seeds; "
          f"queued {len(asked)} paper setting(s) now"
          + (f", {recovered} trial(s) without tickets again" if recovered else "")
          + f"; {states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
            f"{states[TrialState.RUNNING]} running or queued")
    print(f"  Optuna study {search.study_name!r}; MLflow experiment "
          f"{tracking[t.A_EXPERIMENT]!r} (id {tracking[t.A_EXPERIMENT_ID]}), "
          f"parent run {tracking[t.A_PARENT_RUN]}")
    print("\n".join(view_lines(tracking_uri, tracking[t.A_EXPERIMENT_ID])))
    print("  next: senet work" + (f" --storage {args.storage}" if args.storage else ""))
    return 0


def report(search, args: argparse.Namespace) -> int:
    from pathlib import Path

    import optuna
    from optuna.trial import TrialState

    from analysis.search_report import trials_from_study, write_report
    from senet.errors import SenetError
    from senet.queue import search as s
    from senet.queue.storage import open_storage

    storage = open_storage(args.storage, create=False)
    try:
        study = optuna.load_study(study_name=search.study_name, storage=storage)
    except KeyError:
        raise SenetError(f"{search.path.name}: no search {search.name!r} in this storage; "
                         f"run `senet search {args.file}` and `senet work` first") from None
    trials = trials_from_study(study, search)
    if not trials:
        raise SenetError(f"search {search.name!r}: no trial has finished yet; "
                         "run `senet work` first")
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    out = Path(args.out) if args.out else Path("results") / "search" / s.short_name(search)
    written = write_report(trials, out, search.objective, model=search.settings["model"],
                           title=search.title, pruned=pruned)
    print(written["table"])
    print()
    print(f"{len(trials)} finished trials, {pruned} pruned. Verdict: {written['verdict']}")
    for path in written["files"]:
        print(f"  wrote {path}")
    return 0
