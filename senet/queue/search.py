"""Searches: per-stage reduction ratios chosen by a multi-objective Optuna sampler.

A search file (`experiments/search/*.toml`) uses the grid format: the shared settings
of a grid at the top level (model, preset, dataset, epochs, ...), plus

    trials = 30                        # the budget: trials asked, all workers together
    objectives = ["error", "params"]   # minimise val top-1 error and params (or gmacs)
    seeds = [0]
    [space]
    reduction_stage1 = [2, 4, 8, 16, 32, 64, "none"]   # one list per stage of the model
    squeeze = ["avg", "max"]                           # optional
    gate = ["sigmoid", "tanh"]                         # optional

A stage left out of [space] keeps the file's `reduction` (default 16). Stages are
numbered as in `senet describe`: CIFAR 1-3, ImageNet 2-5.

The sampler side works against any Optuna storage (SQLite, journal file, ...): the
study's first trials are the paper's uniform settings (r = 2, 4, 8, 16, 32 everywhere, and
the plain network), enqueued once by whoever creates the study, so that the front always
holds the paper's choices. ``ask_config`` hands out one trial at a time and never more
than the budget; ``tell_result`` / ``tell_pruned`` / ``tell_failed`` close it.
Per-epoch validation error goes through ``should_prune``: Optuna's own report/should_prune
refuse multi-objective trials, so the error is stored as the trial's intermediate value and
the pruner is asked against a single-objective view of the study (see ``should_prune``).
"""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from senet.errors import SenetError, TrainingStopped
from senet.models import OPTION_NAMES, SE_OPTION_NAMES
from senet.settings.config import WORKER_KEYS
from senet.settings.grid import (
    REQUIRED_KEYS,
    _dataset_family,
    _Parser,
    grid_name,
    model_family,
    read_grid_file,
    resolve_grid_path,
    setting_keys,
)

SEARCH_DIR = "search"
OBJECTIVES = ("params", "gmacs")
SPACE_OPTION_KEYS = ("squeeze", "gate", "activation")
SEARCH_META_KEYS = ("title", "description", "seeds", "trials", "objectives", "sampler_seed",
                    "population_size", "prune_after_epochs", "prune_startup_trials")
# Table 10's ratios; r = 2 is enqueued too where the space has it, so that the uniform
# curve of the report spans r = 2..32 as the paper's does.
PAPER_UNIFORM_R = (2, 4, 8, 16, 32)
# Where the paper's defaults are in the space, the seeded uniform trials use them.
_PAPER_DEFAULTS = {"squeeze": "avg", "gate": "sigmoid", "activation": "relu"}
# Marks a trial asked past the budget by a worker that lost the race; it never trains.
OVER_BUDGET_ATTR = "senet.over_budget"


@dataclass
class Search:
    name: str
    path: Path
    title: str
    settings: dict[str, Any]  # the grid settings every trial shares (model, dataset, ...)
    stages: tuple[int, ...]  # the model's stages, paper numbering
    space: dict[str, list[Any]]  # Optuna parameter name -> choices
    fixed_reduction: dict[int, int | str]  # stages not searched -> their r or "none"
    objective: str  # "params" or "gmacs": the second objective, next to the error
    seeds: list[int]
    trials: int
    sampler_seed: int = 0
    population_size: int = 10
    prune_after_epochs: int = 1  # no trial is stopped before it trained this many epochs
    prune_startup_trials: int = 5  # nor before this many trials completed
    description: str | None = field(default=None)

    def pruner(self) -> optuna.pruners.BasePruner:
        """The median rule: stop a trial whose best error so far is worse than the median
        of the completed trials at the same (1-based) epoch."""
        return optuna.pruners.MedianPruner(
            n_startup_trials=self.prune_startup_trials, n_warmup_steps=self.prune_after_epochs
        )

    @property
    def study_name(self) -> str:
        return f"senet-search:{self.name}"

    def stage_key(self, stage: int) -> str:
        return f"reduction_stage{stage}"


# ---------------------------------------------------------------------------
# Parsing


def load_search(spec: str | Path) -> Search:
    """Parse and validate a search file; errors are one line naming `file:key`."""
    return _SearchParser(*read_grid_file(spec)).parse_search()


class _SearchParser(_Parser):
    """The grid parser's checks for settings, seeds and models, plus [space] and budget."""

    def parse_search(self) -> Search:
        data = dict(self.data)
        space = data.pop("space", None)
        meta = {k: data.pop(k) for k in SEARCH_META_KEYS if k in data}
        for key in data:
            if key in ("axes", "variants"):
                raise self.fail(key, "a search has no grid rows; list choices in [space]")
            unknown = key not in setting_keys() and key not in WORKER_KEYS
            if key in ("stages", "baseline") or unknown:
                allowed = ", ".join([*SEARCH_META_KEYS, "[space]", *sorted(setting_keys())])
                hint = (" (say 'no SE in stage N' with reduction_stageN = [\"none\"] in [space])"
                        if key == "stages" else "")
                raise self.fail(key, f"unknown key {key!r}{hint}; search keys are {allowed}")
        base = self._settings(data, prefix="")
        for key in REQUIRED_KEYS:
            if key not in base:
                raise self.fail(key, f"missing; every search needs {', '.join(REQUIRED_KEYS)}")
        model, origin = base["model"]
        self._check_model(model, origin, "search")
        if not model.startswith("se_"):
            raise self.fail(origin, f"a search needs an se_ model, got {model!r}")
        dataset, dataset_origin = base["dataset"]
        wanted = _dataset_family(dataset)
        if dataset != "builtin" and wanted and model_family(model) != wanted:
            raise self.fail(dataset_origin, f"model {model!r} is a {model_family(model)} "
                                            f"model but the dataset is {dataset!r}")
        self._check_options(model, base, "search")
        stages = _model_stages(model)
        search_space, fixed = self._space(space, model, base, stages)
        settings = {k: v for k, (v, _) in base.items()}
        settings.pop("reduction", None)
        return Search(
            name=grid_name(self.path),
            path=self.path,
            title=self._string(meta, "title", default=grid_name(self.path)),
            description=self._string(meta, "description", default=None),
            settings=settings,
            stages=stages,
            space=search_space,
            fixed_reduction=fixed,
            objective=self._objective(meta.get("objectives", ["error", "params"])),
            seeds=self._seeds(meta.get("seeds", [0])),
            trials=self._positive(meta, "trials", None),
            sampler_seed=self._positive(meta, "sampler_seed", 0, minimum=0),
            population_size=self._positive(meta, "population_size", 10, minimum=2),
            prune_after_epochs=self._positive(meta, "prune_after_epochs", 1),
            prune_startup_trials=self._positive(meta, "prune_startup_trials", 5, minimum=0),
        )

    def _positive(self, meta: dict[str, Any], key: str, default: int | None,
                  minimum: int = 1) -> int:
        value = meta.get(key, default)
        if value is None:
            raise self.fail(key, "missing; give the budget, e.g. trials = 30")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def _objective(self, value: Any) -> str:
        ok = (isinstance(value, list) and len(value) == 2 and value[0] == "error"
              and value[1] in OBJECTIVES)
        if not ok:
            raise self.fail("objectives", f"expected [\"error\", \"params\"] or "
                                          f"[\"error\", \"gmacs\"], got {value!r}")
        return value[1]

    def _space(
        self, space: Any, model: str, base: dict[str, tuple[Any, str]], stages: tuple[int, ...]
    ) -> tuple[dict[str, list[Any]], dict[int, int | str]]:
        from senet.models import validate_options

        if not isinstance(space, dict) or not space:
            raise self.fail("space", "missing or empty; e.g. [space] reduction_stage1 = "
                                     "[4, 8, 16, \"none\"]")
        stage_keys = {f"reduction_stage{s}": s for s in stages}
        out: dict[str, list[Any]] = {}
        for key, values in space.items():
            origin = f"space.{key}"
            if key not in stage_keys and key not in SPACE_OPTION_KEYS:
                if key.startswith("reduction_stage"):
                    raise self.fail(origin, f"model {model} has no such stage; its stages are "
                                            f"{', '.join(map(str, stages))}")
                allowed = ", ".join([*stage_keys, *SPACE_OPTION_KEYS])
                raise self.fail(origin, f"unknown key {key!r}; the space takes {allowed}")
            if key in base:
                raise self.fail(origin, f"{key} is both fixed at the top level and searched")
            if not isinstance(values, list) or not values:
                raise self.fail(origin, f"expected a non-empty list of choices, got {values!r}")
            if len({str(v) for v in values}) != len(values):
                raise self.fail(origin, f"repeated choice in {values!r}")
            if key in stage_keys:
                out[key] = [self._ratio(origin, v) for v in values]
            else:
                for v in values:
                    try:
                        validate_options(model, {key: v})
                    except SenetError as exc:
                        raise self.fail(origin, str(exc)) from None
                out[key] = [str(v).lower() for v in values]
        fixed_r = base.get("reduction", (16, "reduction"))
        fixed = self._fixed(fixed_r, model, stages, set(out))
        searched = [out[k] for k in stage_keys if k in out]
        if not searched:
            raise self.fail("space", "no reduction_stageN key: nothing per-stage to search "
                                     f"(stages of {model}: {', '.join(map(str, stages))})")
        fixed_all_none = all(v == "none" for v in fixed.values())
        if fixed_all_none and all(choices == ["none"] for choices in searched):
            raise self.fail("space", "every stage is none only: that is the plain model, "
                                     "not a search")
        return out, fixed

    def _ratio(self, origin: str, value: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == "none":
            return "none"
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(origin, f"choice {value!r}: expected an integer >= 1 or \"none\"")
        return value

    def _fixed(self, fixed_r: tuple[Any, str], model: str, stages: tuple[int, ...],
               searched: set[str]) -> dict[int, int | str]:
        from senet.models import stage_reductions, validate_options

        value, origin = fixed_r
        try:
            resolved = validate_options(model, {"reduction": value})
        except SenetError as exc:
            raise self.fail(origin, str(exc)) from None
        per_stage = stage_reductions(resolved, model_family(model))
        return {s: per_stage.get(s, "none") for s in stages
                if f"reduction_stage{s}" not in searched}


def _model_stages(model: str) -> tuple[int, ...]:
    from senet.models.cifar import CIFAR_STAGES
    from senet.models.imagenet import IMAGENET_STAGES

    return IMAGENET_STAGES if model_family(model) == "imagenet" else CIFAR_STAGES


# ---------------------------------------------------------------------------
# From sampled parameters to trainable settings


def reduction_string(search: Search, params: dict[str, Any]) -> str:
    """The per-stage reduction of a trial, e.g. ``4,8,none`` (stage order)."""
    values = []
    for stage in search.stages:
        value = params.get(search.stage_key(stage), search.fixed_reduction.get(stage))
        values.append(str(value))
    return ",".join(values)


def trial_settings(search: Search, params: dict[str, Any]) -> dict[str, Any]:
    """Grid-style settings of one trial: the shared ones plus model options, canonical
    (so a trial equal to a grid point compares equal), or the plain model when every stage
    is ``none``."""
    from senet.models import validate_options

    reduction = reduction_string(search, params)
    settings = dict(search.settings)
    if all(v == "none" for v in reduction.split(",")):
        settings["model"] = settings["model"][len("se_"):]
        for key in SE_OPTION_NAMES:
            settings.pop(key, None)
        return settings
    options = {k: params[k] for k in SPACE_OPTION_KEYS if k in params}
    resolved = validate_options(settings["model"], {**options, "reduction": reduction})
    settings.update(options)
    settings["reduction"] = resolved["reduction"]
    if resolved["stages"] != ",".join(map(str, search.stages)):
        settings["stages"] = resolved["stages"]
    return settings


def cost(search: Search, settings: dict[str, Any]) -> float:
    """The second objective of a trial: params (millions) or GMACs, from its settings."""
    from senet.models import build
    from senet.models.flops import count

    options = {k: v for k, v in settings.items() if k in OPTION_NAMES}
    num_classes = {"cifar100": 100}.get(settings.get("dataset", ""), None)
    if num_classes is not None:
        options["num_classes"] = num_classes
    counts = count(build(settings["model"], **options))
    return counts.params / 1e6 if search.objective == "params" else counts.gmacs


def uniform_params(search: Search) -> list[dict[str, Any]]:
    """The paper's settings that lie in the space: the same r in every stage (2, 4, 8,
    16, 32) and the plain network (every stage none)."""
    rows = []
    for r in (*PAPER_UNIFORM_R, "none"):
        params: dict[str, Any] = {}
        ok = all(search.fixed_reduction[s] == r for s in search.fixed_reduction)
        for stage in search.stages:
            key = search.stage_key(stage)
            if key in search.space:
                ok = ok and r in search.space[key]
                params[key] = r
        for key in SPACE_OPTION_KEYS:
            if key in search.space:
                default = _PAPER_DEFAULTS[key]
                params[key] = default if default in search.space[key] else search.space[key][0]
        if ok:
            rows.append(params)
    return rows


# ---------------------------------------------------------------------------
# The study


def _distributions(search: Search) -> dict[str, optuna.distributions.CategoricalDistribution]:
    return {k: optuna.distributions.CategoricalDistribution(v) for k, v in search.space.items()}


def _storage(storage: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """A URL or journal path opens through the queue's own opener, whose SQLite storage
    begins every transaction IMMEDIATE: with Optuna's plain SQLite storage two processes
    can pop the same enqueued trial (seen in test_search's concurrency test)."""
    if not isinstance(storage, str):
        return storage
    from senet.queue.storage import open_storage

    return open_storage(storage)


def open_study(search: Search, storage: str | optuna.storages.BaseStorage) -> optuna.Study:
    """Create the search's study (and enqueue the paper's uniform settings), or load it.

    ``storage``: a journal path or URL (opened as the queue opens it), or a storage object
    that is safe for concurrent writers. Only the process that creates the study
    enqueues, so several processes may call this at once without seeding twice.
    """
    storage = _storage(storage)
    sampler = optuna.samplers.NSGAIISampler(
        population_size=search.population_size, seed=search.sampler_seed
    )
    try:
        study = optuna.create_study(
            storage=storage, study_name=search.study_name, sampler=sampler,
            directions=["minimize", "minimize"],
        )
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=search.study_name, storage=storage, sampler=sampler)
    with warnings.catch_warnings():  # experimental in Optuna 5.0, and only cosmetic
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_error", search.objective])
    study.set_user_attr("senet.search", search.name)
    study.set_user_attr(BUDGET_ATTR, search.trials)
    for params in uniform_params(search):
        study.enqueue_trial(params, user_attrs={"senet.seeded": "paper uniform"})
    return study


def _counted(study: optuna.Study) -> int:
    """Trials asked so far: enqueued ones still waiting are not asked yet (a budget
    smaller than the paper's settings asks only the first of them)."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING and not t.user_attrs.get(OVER_BUDGET_ATTR))


def ask_config(study: optuna.Study, search: Search) -> tuple[int, dict[str, Any]] | None:
    """Ask one trial: (its number, its settings), or None once the budget is asked.

    The storage numbers trials atomically (0, 1, 2, ... per study), so the trial number
    decides: one numbered at or past the budget was asked by a process that lost the race
    at the end; it is closed as failed and marked ``senet.over_budget``, and never trains.
    Waiting (enqueued) trials go first, so the paper's settings come out as trials 0..k.
    """
    if _counted(study) >= search.trials:
        return None
    trial = study.ask(_distributions(search))
    if trial.number >= search.trials:
        trial.set_user_attr(OVER_BUDGET_ATTR, True)
        study.tell(trial.number, state=TrialState.FAIL)
        return None
    settings = trial_settings(search, trial.params)
    trial.set_user_attr("senet.reduction", reduction_string(search, trial.params))
    return trial.number, settings


def _trial_id(study: optuna.Study, number: int) -> int:
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


def tell_result(
    study: optuna.Study, number: int, error: float, cost_value: float,
    seed_errors: list[float] | None = None,
) -> None:
    """Close a trial with its validation top-1 error in percent (mean over seeds) and its
    cost (params in millions, or GMACs); ``seed_errors`` keeps each seed's error for the
    report's mean ± std."""
    if seed_errors is not None:
        study._storage.set_trial_user_attr(
            _trial_id(study, number), "senet.seed_errors", [float(e) for e in seed_errors]
        )
    study.tell(number, [float(error), float(cost_value)])


def tell_pruned(study: optuna.Study, number: int, last_epoch: int) -> None:
    """Close a trial that the pruner stopped, with the last epoch it trained."""
    study._storage.set_trial_user_attr(_trial_id(study, number), "senet.last_epoch", last_epoch)
    study.tell(number, state=TrialState.PRUNED)


def tell_failed(study: optuna.Study, number: int, reason: str) -> None:
    study._storage.set_trial_user_attr(_trial_id(study, number), "senet.fail_reason", reason)
    study.tell(number, state=TrialState.FAIL)


def should_prune(
    study: optuna.Study,
    number: int,
    epoch: int,
    error: float,
    pruner: optuna.pruners.BasePruner | None = None,
) -> bool:
    """Record epoch ``epoch``'s validation error of trial ``number``; say whether to stop.

    ``epoch`` is 1-based, as in the training log. Pass ``search.pruner()``; the default
    is the median rule after 5 completed trials, from epoch 1 on.

    Multi-objective trials cannot ``report``, but the storage keeps intermediate values
    for any trial. The error goes there, and the pruner (MedianPruner by default) judges
    the trial against a single-objective, in-memory view of the study: every completed
    trial with its error as the value and its per-epoch errors as intermediate values.
    With several seeds per trial, each seed reports on its own; the last report of an
    epoch is what later trials are compared with.
    """
    pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    study._storage.set_trial_intermediate_value(_trial_id(study, number), epoch, float(error))
    view = optuna.create_study(direction="minimize")
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        view.add_trial(optuna.trial.create_trial(
            value=t.values[0], intermediate_values=dict(t.intermediate_values)
        ))
    current: FrozenTrial = study._storage.get_trial(_trial_id(study, number))
    return bool(pruner.prune(view, current))


# ---------------------------------------------------------------------------
# Searches in the ticket queue: what `senet search` and the workers call
#
# A search is a dynamic grid: its queue (`search/<name>`) is a GridQueue whose points are
# the trials, added as the sampler proposes them (point ``trialNNN``, one ticket per
# seed). The Optuna study of the sampler lives in the same storage. Workers call
# ``refill`` before claiming, ``training_hooks`` before training, ``pruned`` when the
# pruner stopped a training, and ``after_training`` once a ticket is closed.

A_SEARCH_FILE = "senet.search_file"  # queue attr: the search file, marks a search queue
TAG_SEARCH = "senet.search"  # MLflow run tag: the search's name
T_TRIAL = "senet.trial"  # ticket attr and MLflow run tag: the Optuna trial number
TAG_PRUNED = "senet.pruned"  # MLflow run tag: the last epoch a pruned trial trained
BUDGET_ATTR = "senet.trials"  # study attr: the budget (`senet search --trials` sets it)


class TrialPruned(TrainingStopped):
    """Raised from the epoch hook when the pruner stops a trial (or another seed of it
    was pruned): a TrainingStopped, so the MLflow run ends KILLED."""

    def __init__(self, epoch: int, why: str) -> None:
        super().__init__(f"pruned after epoch {epoch}: {why}")
        self.epoch = epoch
        self.run_tags = {TAG_PRUNED: str(epoch)}  # the engine tags the run with them


def queue_name(search: Search) -> str:
    """``search/<name>``: the name a file under experiments/search/ already has."""
    prefix = f"{SEARCH_DIR}/"
    return search.name if search.name.startswith(prefix) else prefix + search.name


def short_name(search: Search) -> str:
    """The file's own name, e.g. ``se_resnet20_stage_r`` (the report's folder)."""
    return search.name.rsplit("/", 1)[-1]


def trial_point(number: int) -> str:
    return f"trial{number:03d}"


def trial_of(ticket: Any) -> int | None:
    """The trial a ticket trains, from its point id: replacement tickets (a lost worker's,
    requeued by the queue) carry the point but not the search's own attrs."""
    point = str(ticket.point)
    return int(point[len("trial"):]) if point.startswith("trial") else None


# Keyed by the storage's id: each value holds the storage too, so no id is reused.
_OPENED: dict[tuple[str, int], tuple[Search, optuna.Study, Any]] = {}
_GRIDS: dict[tuple[str, int], Any] = {}  # queues known to be plain grids


def opened(queue: Any) -> tuple[Search, optuna.Study] | None:
    """The search and study behind a queue, or None for a grid's queue. Cached per
    process; the budget is read afresh, since `senet search --trials` may raise it."""
    key = (queue.name, id(queue.store.storage))
    if key in _GRIDS:
        return None
    if key not in _OPENED:
        path = queue.attrs().get(A_SEARCH_FILE)
        if path is None:
            _GRIDS[key] = queue.store.storage
            return None
        search = load_search(path)
        study = open_study(search, queue.store.storage)
        # Every worker's sampler would otherwise start from the same seed and, while the
        # first generation is random, propose the same settings as every other worker
        # (seen in the shipped CPU run: a restarted pair of workers replayed trials 6-14).
        study.sampler.reseed_rng()
        _OPENED[key] = (search, study, queue.store.storage)
    search, study, _ = _OPENED[key]
    budget = study.user_attrs.get(BUDGET_ATTR, search.trials)
    return replace(search, trials=int(budget)), study


def _trial_state(study: optuna.Study, number: int) -> TrialState:
    return study._storage.get_trial(_trial_id(study, number)).state


def ask_and_enqueue(queue: Any, search: Search, study: optuna.Study) -> int | None:
    """Ask the sampler for one trial and queue a ticket per seed; the trial number, or
    None once the budget is asked."""
    asked = ask_config(study, search)
    if asked is None:
        return None
    number, settings = asked
    enqueue_trial(queue, search, study, number, settings)
    return number


def enqueue_trial(queue: Any, search: Search, study: optuna.Study, number: int,
                  settings: dict[str, Any]) -> None:
    label = "r=" + _reduction_of(study, number)
    for seed in search.seeds:
        queue.enqueue(trial_point(number), seed, label, settings, {T_TRIAL: number})


def _reduction_of(study: optuna.Study, number: int) -> str:
    trial = study._storage.get_trial(_trial_id(study, number))
    return str(trial.user_attrs.get("senet.reduction", "?"))


def requeue_orphans(queue: Any, search: Search, study: optuna.Study) -> int:
    """Queue tickets for RUNNING trials that have none (a worker died between asking and
    queuing). Safe to race a worker doing the same: the queue settles duplicate slots."""
    have = {trial_of(t) for t in queue.tickets()}
    added = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number not in have and not t.user_attrs.get(OVER_BUDGET_ATTR):
            enqueue_trial(queue, search, study, t.number, trial_settings(search, t.params))
            added += 1
    return added


def refill(queue: Any) -> int | None:
    """Before a worker claims: where a search's queue has no waiting ticket and budget is
    left, ask the next trial and queue its tickets. Returns the trial number asked."""
    found = opened(queue)
    if found is None or queue.waiting():
        return None
    return ask_and_enqueue(queue, *found)


def _planned_epochs(settings: dict[str, Any]) -> int:
    from senet.settings.config import load_preset

    return int(settings.get("epochs") or load_preset(settings["preset"]).get("epochs", 1))


def training_hooks(queue: Any, ticket: Any, cfg: Any) -> dict[str, Any]:
    """For a search's ticket: tag the run (``senet.queue.search``, ``senet.trial``) and return
    run_training's ``on_epoch`` that feeds the pruner; {} for a grid's ticket."""
    found = opened(queue)
    if found is None:
        return {}
    search, study = found
    number = trial_of(ticket)
    cfg.tags.update({TAG_SEARCH: search.name, T_TRIAL: str(number)})
    last = _planned_epochs(ticket.settings)
    pruner = search.pruner()
    # The paper's own settings always run to the end: the front must hold them.
    seeded = "senet.seeded" in study._storage.get_trial(_trial_id(study, number)).user_attrs
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per pruner question
    # Only the first seed reports to the pruner, so it compares seed with seed: with each
    # seed judged on its own, seed noise alone pruned most trials of a first CPU run.
    judge = ticket.seed == search.seeds[0]

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if _trial_state(study, number) == TrialState.PRUNED:
            why = "another seed of the trial was pruned"
        elif not judge:
            return
        elif should_prune(study, number, epoch, metrics["val_top1_err"], pruner) \
                and epoch < last and not seeded:  # a last epoch is done: keep its result
            why = "worse than the median of the finished trials"
            # Told at once, so the trial's other seeds, packed beside this one, stop at
            # this same epoch instead of training on for nothing.
            _tell_once(lambda: tell_pruned(study, number, epoch))
        else:
            return
        raise TrialPruned(epoch, why)

    return {"on_epoch": on_epoch}


def _close_waiting(queue: Any, number: int, reason: str) -> None:
    for t in queue.waiting():
        if trial_of(t) == number and queue.try_claim(t):
            queue.close(t, reason)


def pruned(queue: Any, ticket: Any, exc: TrialPruned) -> dict[str, Any]:
    """Close a pruned training's ticket for good (PRUNED, never retried), record the
    trial pruned with its last epoch, and close its seeds still waiting."""
    _, study = opened(queue)  # type: ignore[misc]
    number = trial_of(ticket)
    queue.close(ticket, str(exc))
    if _trial_state(study, number) == TrialState.RUNNING:
        _tell_once(lambda: tell_pruned(study, number, exc.epoch))
    _close_waiting(queue, number, f"trial {number} was pruned")
    print(f"[{queue.name}] {ticket.label!r} seed {ticket.seed}: {exc}", flush=True)
    return {"outcome": "pruned", "epoch": exc.epoch}


def _tell_once(tell: Any) -> None:
    """Two seeds finishing together may both try to close the trial; one wins."""
    try:
        tell()
    except (RuntimeError, ValueError) as exc:  # Optuna: the trial is already finished
        message = str(exc).lower()
        if "finished" not in message and "cannot tell" not in message:
            raise


def after_training(queue: Any, ticket: Any, outcome: dict[str, Any]) -> None:
    """Once a search's ticket is closed: when every seed of its trial is done, tell the
    trial its mean error and cost; a failed training fails the trial."""
    found = opened(queue)
    if found is None:
        return
    search, study = found
    number = trial_of(ticket)
    if _trial_state(study, number) != TrialState.RUNNING:
        return
    if outcome.get("outcome") == "failed":
        _tell_once(lambda: tell_failed(study, number, str(outcome.get("reason", ""))))
        _close_waiting(queue, number, f"trial {number} failed")
        return
    errors: dict[int, float] = {}
    for t in queue.tickets():
        if trial_of(t) == number and t.state == TrialState.COMPLETE:
            errors.setdefault(t.seed, float(t.value))
    if set(errors) >= set(search.seeds):
        values = [errors[s] for s in search.seeds]
        mean = sum(values) / len(values)
        _tell_once(lambda: tell_result(study, number, mean, cost(search, ticket.settings),
                                       values))


# ---------------------------------------------------------------------------
# Pricing a search like a grid (`senet plan`)


def is_search_file(spec: str | Path) -> bool:
    """A grid-format file with a [space] table is a search file."""
    try:
        path = resolve_grid_path(str(spec))
        return "space" in tomllib.loads(path.read_text())
    except (SenetError, tomllib.TOMLDecodeError, OSError):
        return False


def as_grid(search: Search) -> Any:
    """A stand-in grid for `senet plan`: ``trials`` distinct settings of the space (the
    paper's uniform ones first, then the space in order), each trained once per seed.
    Which settings the sampler will pick is unknown, but a training's cost depends on
    the model, dataset and schedule, hardly on r, so the count and the hours hold."""
    import itertools

    from senet.settings.grid import Grid, Point

    chosen = list(uniform_params(search))
    keys = list(search.space)
    for combo in itertools.product(*(search.space[k] for k in keys)):
        if len(chosen) >= search.trials:
            break
        params = dict(zip(keys, combo, strict=True))
        if params not in chosen:
            chosen.append(params)
    # Point ids unique across files: `senet plan` caches settings by point id.
    points = [Point(f"{queue_name(search)}/{trial_point(i)}", "r=" + reduction_string(search, p),
                    trial_settings(search, p)) for i, p in enumerate(chosen[:search.trials])]
    return Grid(name=queue_name(search), path=search.path, title=search.title,
                paper_table=None, paper_ref=None, seeds=list(search.seeds), points=points)
