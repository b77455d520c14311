"""The training engine: one run, end to end, resumable, tracked in MLflow.

``run_training`` reads top to bottom: set-up, resume, then the epoch loop (train,
evaluate, checkpoint, log). Checkpoint files are ``senet.engine.checkpoint``; opening and closing
the MLflow run is ``senet.tracking.store.tracked_run``; the optimisation step and the evaluation
are ``senet.engine.step``'s (no host sync per step; CUDA graphs on CUDA by default).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import senet
from senet.engine.step import (
    graphs_available,
    make_evaluator,
    make_graph_ready,
    make_optimizer,
    make_train_step,
)
from senet.errors import SenetError, TrainingFailed, TrainingStopped
from senet.progress import EpochBar, format_duration
from senet.settings.config import TrainConfig, load_preset


@dataclass
class Plan:
    """What the preset and the config resolve to for this run."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    label_smoothing: float
    schedule: dict[str, Any]
    warmup: bool
    model_options: dict[str, Any]


def _depth(model_name: str) -> int:
    match = re.search(r"(\d+)", model_name)
    return int(match.group(1)) if match else 0


def make_plan(cfg: TrainConfig, preset: dict[str, Any]) -> Plan:
    from senet.models import valid_option_names, validate_options

    opt = preset.get("optimizer", {})
    # `is None`, not `or`: an explicit 0 is an error, never "use the preset's value".
    batch = int(preset.get("batch_size", 128) if cfg.batch_size is None else cfg.batch_size)
    epochs = int(preset.get("epochs", 1) if cfg.epochs is None else cfg.epochs)
    if batch < 1:
        raise SenetError(f"--batch-size {batch}: expected an integer >= 1")
    if epochs < 1:
        raise SenetError(f"--epochs {epochs}: expected an integer >= 1")
    if cfg.lr is not None:
        lr = float(cfg.lr)
        if not (math.isfinite(lr) and lr > 0):
            raise SenetError(f"--lr {cfg.lr}: the learning rate must be a finite number > 0")
    else:  # linear scaling rule: the preset's rate is for its reference batch
        lr = float(opt.get("lr", 0.1)) * batch / float(opt.get("lr_reference_batch", batch))
    schedule = dict(preset.get("schedule", {}))
    allowed = set(valid_option_names(cfg.model))
    # A preset's model defaults (e.g. no SE bias) apply where the model has that option.
    options = {k: v for k, v in preset.get("model", {}).items() if k in allowed}
    options.update(cfg.model_options)
    validate_options(cfg.model, options)
    return Plan(
        epochs=epochs,
        batch_size=batch,
        lr=lr,
        momentum=float(opt.get("momentum", 0.9)),
        weight_decay=float(opt.get("weight_decay", 1e-4)),
        nesterov=bool(opt.get("nesterov", False)),
        label_smoothing=float(preset.get("train", {}).get("label_smoothing", 0.0)),
        schedule=schedule,
        warmup=_depth(cfg.model) >= int(schedule.get("warmup_min_depth", 0)),
        model_options=options,
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SenetError(f"--device {name}: CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SenetError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None


def default_out(cfg: TrainConfig) -> Path:
    """A folder named after the run's settings, so re-running a command finds its checkpoint."""
    key = json.dumps(
        [cfg.model, sorted(cfg.model_options.items()), cfg.dataset, cfg.preset, cfg.epochs,
         cfg.batch_size, cfg.lr, cfg.subset], default=str,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    dataset = re.sub(r"[^A-Za-z0-9]+", "-", cfg.dataset).strip("-")
    return Path("runs") / f"{cfg.model}-{dataset}-{digest}-s{cfg.seed}"


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), world


def run_training(
    cfg: TrainConfig,
    *,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train one run. Returns the summary that is also written to ``out/summary.json``.

    Raises TrainingFailed when the training diverges (a non-finite training or validation
    loss or final metric: the MLflow run is marked FAILED and the checkpoint of the last
    good epoch, if any, is kept) and TrainingStopped when ``should_stop()`` says so.
    ``on_epoch(epoch, metrics)`` runs on rank 0 after each epoch is checkpointed and logged; raising
    TrainingStopped there ends the run KILLED (a search prunes a trial this way).
    """
    from senet.data import load_data
    from senet.data.load import check_dataset
    from senet.engine import checkpoint
    from senet.engine.schedule import Schedule
    from senet.models import build
    from senet.models.flops import count
    from senet.tracking.restart import run_to_continue
    from senet.tracking.store import RunTracker, tracked_run

    rank, world = _distributed()
    is_main = rank == 0
    say = (log or (lambda msg: print(msg, flush=True))) if is_main else (lambda msg: None)

    # -- set-up: every check a user's input can fail comes before any MLflow record
    plan = make_plan(cfg, load_preset(cfg.preset))
    device = pick_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    _make_out(out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise SenetError(
            f"{ckpt_path} exists: add --resume to continue that run, or give another --out"
        )
    _check_same_settings(out, _plan_params(cfg, plan), cfg.resume, None)  # in seconds
    # A mistyped dataset is refused before the tracking store is touched (a new store
    # would be created for nothing), and before any image is read.
    _check_num_classes(check_dataset(cfg.dataset, cfg.data_root), plan, cfg.dataset)
    tracker = RunTracker(cfg.tracking_uri, cfg.experiment) if is_main else None
    if cfg.compile:
        _share_inductor_cache()

    data = load_data(cfg.dataset, root=cfg.data_root, device=device, subset=cfg.subset,
                     seed=cfg.seed, batch_size=plan.batch_size, workers=cfg.workers)
    _check_classes(data, plan)
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed
    model = build(cfg.model, **{**plan.model_options, "num_classes": data.num_classes})
    counts = count(model, data.image_size)
    model = model.to(device, memory_format=torch.channels_last)
    graphs = _use_graphs(cfg, device, data, world)
    optimizer = make_optimizer(model.parameters(), lr=plan.lr, momentum=plan.momentum,
                               weight_decay=plan.weight_decay, nesterov=plan.nesterov,
                               device=device, graphs=graphs)
    steps = data.steps_per_epoch()
    if steps < 1:
        raise SenetError(
            f"dataset {data.name}: {data.train_len} training images give no full batch of "
            f"{plan.batch_size}; lower --batch-size or raise --subset"
        )
    schedule = Schedule.from_preset(plan.schedule, plan.lr, plan.epochs, steps, plan.warmup)
    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    params = _params(cfg, plan, use_amp, world, model, graphs)
    _check_same_settings(out, params, cfg.resume, {
        "config": cfg.to_dict(), "gmacs": counts.gmacs, "params": counts.params})

    # -- resume
    state: dict[str, Any] = {"epoch": 0, "history": [], "run_id": None, "wall": 0.0}
    if ckpt_path.exists():
        state = checkpoint.restore_training(ckpt_path, device, model=model,
                                            optimizer=optimizer, schedule=schedule)
        if graphs:  # load_state_dict put the checkpoint's float lr back
            make_graph_ready(optimizer, device)
    if state["run_id"] is None and cfg.resume:
        state["run_id"] = _recorded_run_id(out)  # killed before its first checkpoint
    finished = bool(state["history"]) and (state["epoch"] >= plan.epochs or schedule.finished)
    if finished and tracker and tracker.is_finished(state["run_id"]):
        say(f"{out}: this training already finished after epoch {state['epoch']} "
            f"(MLflow run {state['run_id']}); nothing to do")
        return _summarise(state, counts, cfg, plan)
    if ckpt_path.exists():
        say(f"resuming {out} after epoch {state['epoch']}/{plan.epochs}")

    # The step is built after the checkpoint is loaded: a CUDA graph captures the
    # parameters and optimizer state where they are.
    amp_dtype = torch.bfloat16 if use_amp else None
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        train_model = torch.compile(train_model)
    step = make_train_step(train_model, optimizer, amp_dtype=amp_dtype, graphs=graphs,
                           label_smoothing=plan.label_smoothing, check_every=CHECK_EVERY)
    evaluator = make_evaluator(model, amp_dtype=amp_dtype, graphs=graphs,
                               batch_size=plan.batch_size if graphs else None)
    tags = _run_tags(cfg, device)
    if tracker and not state["history"]:  # epoch 1 again: never in a run that logged epochs
        state["run_id"] = run_to_continue(tracker, state["run_id"], tags, say)

    # -- the epochs, inside the MLflow run (closed FINISHED, FAILED or KILLED on leaving)
    with tracked_run(tracker, run_id=state["run_id"], tags=tags,
                     parent_run_id=cfg.parent_run_id, run_name=cfg.run_name or out.name,
                     system_metrics=os.environ.get("SENET_SYSTEM_METRICS", "1") != "0",
                     ) as run_id:
        state["run_id"] = run_id
        if is_main:
            _record_run_id(out, run_id)
        if tracker:
            _log_setup(tracker, params, tags, data, state["history"])
        say(f"{cfg.model} on {data.name}: {counts.params / 1e6:.2f}M params, "
            f"{counts.gmacs:.3f} GMACs, {data.train_len} train / {data.val_len} val images, "
            f"{plan.epochs} epochs of {steps} steps, device {device} ({step.path}"
            f"{', compiled' if cfg.compile else ''}), run {state['run_id']}")
        try:
            # A finished training whose run was not closed has only its finishing step left.
            first_epoch = plan.epochs + 1 if finished else state["epoch"] + 1
            for epoch in range(first_epoch, plan.epochs + 1):
                t0 = time.monotonic()
                train_stats = _train_epoch(step, schedule, data, epoch, plan, world, rank,
                                           should_stop, ckpt_path)
                train_time = time.monotonic() - t0
                val = _evaluate(evaluator, data, world, rank)
                _check_losses({**val, "train_loss": train_stats["train_loss"]},
                              f"epoch {epoch}", ckpt_path)
                schedule.end_epoch(val["val_loss"])
                metrics = {**train_stats, **val,
                           "img_per_s": train_stats.pop("images") / max(train_time, 1e-9)}
                state["history"].append({"epoch": epoch, **metrics})
                state["epoch"] = epoch
                state["wall"] += time.monotonic() - t0
                if is_main:
                    checkpoint.save_training(ckpt_path, model=model, optimizer=optimizer,
                                             schedule=schedule, state=state)
                    tracker.log_metrics(metrics, step=epoch)
                    say(_epoch_line(epoch, plan.epochs, metrics, state))
                    if on_epoch is not None:
                        on_epoch(epoch, dict(metrics))
                if schedule.finished:
                    say(f"validation loss plateaued after {schedule.max_drops} drops: stopping")
                    break
            summary = _summarise(state, counts, cfg, plan)
            _check_finite({k: summary[k] for k in FINAL_METRICS}, "the final metrics",
                          ckpt_path)
        except TrainingFailed as exc:
            if is_main:
                _write_failed_summary(out, state, exc, counts, cfg, plan)
            raise
        if tracker:
            _log_results(tracker, model, data, out, summary)
    return summary


# How often (in steps) the training loop reads the loss to catch a divergence early; each
# read is a device sync, and the end of every epoch checks anyway.
CHECK_EVERY = 50
FINAL_METRICS = ("final_val_top1_err", "final_val_top5_err", "best_val_top1_err",
                 "best_val_top5_err")
# Params that may change between a run and its resume (another machine, another path).
EXECUTION_PARAMS = frozenset({"compile", "amp_bf16", "world_size", "step_path"})


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SenetError(f"--out {out}: cannot write there ({exc.strerror or exc}); "
                         "choose a writable folder") from None


def _share_inductor_cache() -> None:
    """Compile once per architecture and machine: every worker of a grid (and every later
    run) shares Inductor's cache, unless the user chose a folder."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        base = Path(os.environ.get("SENET_CACHE") or "~/.cache/senet").expanduser()
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(base / "inductor")


def _check_classes(data: Any, plan: Plan) -> None:
    if data.num_classes < 2:
        raise SenetError(f"dataset {data.name}: {data.num_classes} class found; a classifier "
                         "needs at least 2 classes (one folder per class)")
    _check_num_classes(data.num_classes, plan, data.name)


def _check_num_classes(found: int | None, plan: Plan, dataset: str) -> None:
    wanted = plan.model_options.get("num_classes")
    if found is not None and wanted is not None and str(wanted) != str(found):
        raise SenetError(f"--set num_classes={wanted}: dataset {dataset} has "
                         f"{found} classes and the classifier follows the dataset; "
                         "drop num_classes")


def _use_graphs(cfg: TrainConfig, device: torch.device, data: Any, world: int) -> bool:
    """CUDA graphs by default where the step has static shapes: CUDA, in-memory data (full
    batches only), one process, no torch.compile (which brings its own graphs)."""
    from senet.data.tensor_data import TensorData

    return (cfg.cuda_graphs and graphs_available(device) and isinstance(data, TensorData)
            and world == 1 and not cfg.compile)


def _check_same_settings(out: Path, params: dict[str, Any], resume: bool,
                         extra: dict[str, Any] | None) -> None:
    """A resumed run must train on with the settings it started with: compare with the
    resolved settings saved in ``out/config.json``; a fresh run saves them. With ``extra``
    None it only compares ``params`` (an early check, before the data is loaded)."""
    saved_path = out / "config.json"
    if resume and saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text()).get("resolved", {})
        except (OSError, ValueError):
            saved = {}
        if extra is None:
            saved = {k: v for k, v in saved.items() if k in params}
        # The model first: another model's options differ too, but naming them would mislead.
        keys = ["model", *sorted((set(saved) | set(params)) - {"model"})]
        for key in keys:
            if key in EXECUTION_PARAMS:
                continue
            old, new = saved.get(key), params.get(key)
            if str(old) != str(new):
                was = f"{key} {old}" if key in saved else f"no {key}"
                raise SenetError(
                    f"--resume: {key} is {new} now but the checkpoint in {out} was trained with "
                    f"{was}; resume with the same settings, or give another --out")
        return
    if extra is not None:
        saved_path.write_text(json.dumps({**extra, "resolved": params}, indent=2, default=str))


def _recorded_run_id(out: Path) -> str | None:
    try:
        return json.loads((out / "run.json").read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None


def _record_run_id(out: Path, run_id: str | None) -> None:
    """The run id beside the checkpoint as soon as the run starts, so a training killed
    before its first checkpoint continues the same MLflow run on --resume."""
    if run_id is not None:
        (out / "run.json").write_text(json.dumps({"run_id": run_id}))


def _keep_note(ckpt_path: Path) -> str:
    if ckpt_path.exists():
        return f"the checkpoint of the last good epoch is kept in {ckpt_path}"
    return "no checkpoint was written (it diverged in its first epoch)"


def _check_finite(values: dict[str, float], where: str, ckpt_path: Path) -> None:
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
        raise TrainingFailed(
            f"non-finite {', '.join(bad)} in {where}: the training diverged; "
            f"{_keep_note(ckpt_path)}; lower the learning rate")


# A cross-entropy that still learns stays within a few units of ln(classes) (2.3 for 10,
# 6.9 for 1000). Above this the logits are of order 1e4: the weights have blown up, even
# where float64 sums keep the number finite (`--lr 1e6` gives losses near 1e26).
DIVERGED_LOSS = 1e4


def _check_losses(values: dict[str, float], where: str, ckpt_path: Path) -> None:
    _check_finite(values, where, ckpt_path)
    huge = sorted(k for k, v in values.items() if k.endswith("loss") and v > DIVERGED_LOSS)
    if huge:
        shown = ", ".join(f"{k} {values[k]:.3g}" for k in huge)
        raise TrainingFailed(
            f"{shown} in {where}: the training diverged (a loss above {DIVERGED_LOSS:g}); "
            f"{_keep_note(ckpt_path)}; lower the learning rate")


def _train_epoch(
    step: Any, schedule: Any, data: Any, epoch: int, plan: Plan, world: int, rank: int,
    should_stop: Callable[[], bool] | None, ckpt_path: Path,
) -> dict[str, float]:
    """One epoch through ``step``: the losses and error counts stay on the device and are
    read once at the end (and every CHECK_EVERY steps for a non-finite loss)."""
    progress = EpochBar(data.steps_per_epoch(), epoch, plan.epochs)
    shown: float | None = None
    step.begin_epoch()
    lr = schedule.lr(epoch, 0)
    try:
        for i, (x, y) in enumerate(data.train_batches(epoch)):
            if world > 1:  # every rank draws the same batch and keeps its own slice
                x, y = x[rank::world], y[rank::world]
            lr = schedule.lr(epoch, i)
            step(x, y, lr)
            if should_stop and should_stop():
                raise TrainingStopped(f"stopped at epoch {epoch} step {i + 1} on request")
            if progress.enabled and (i + 1) % CHECK_EVERY == 0:
                shown = float(step.last_loss[0])  # as rare as the non-finite check
            progress.update(i + 1, shown)
        progress.close()
        (stats,) = step.end_epoch()
    except TrainingStopped:
        raise
    except TrainingFailed as exc:
        progress.close()
        raise TrainingFailed(f"epoch {epoch}: {exc} (lr {lr:g}): the training diverged; "
                             f"{_keep_note(ckpt_path)}; lower the learning rate") from None
    return {"train_loss": stats["train_loss"], "train_top1_err": stats["train_top1_err"],
            "lr": schedule.lr(epoch, 0), "images": stats["images"] * world}


def _evaluate(evaluator: Any, data: Any, world: int = 1, rank: int = 0) -> dict[str, float]:
    """Validation loss and errors over the whole validation split. Under torchrun each
    rank evaluates its slice of every batch and the sums are added over ranks, so every
    rank gets the same numbers (its plateau schedule steps on the same loss)."""
    if world == 1:
        return evaluator(data.val_batches())[0]
    seen = [0]

    def mine():
        for x, y in data.val_batches():
            x, y = x[rank::world], y[rank::world]
            if len(y):
                seen[0] += len(y)
                yield x, y

    device = next(evaluator.model.parameters()).device
    local = {"val_loss": 0.0, "val_top1_err": 0.0, "val_top5_err": 0.0}
    batches = mine()
    first = next(batches, None)
    if first is not None:
        local = evaluator(_chain(first, batches))[0]
    n = seen[0]
    totals = torch.tensor([local["val_loss"] * n, round(local["val_top1_err"] * n / 100),
                           round(local["val_top5_err"] * n / 100), n],
                          dtype=torch.float64, device=device)
    torch.distributed.all_reduce(totals)
    loss_sum, wrong1, wrong5, total = totals.tolist()  # once per evaluation
    if total == 0:
        raise SenetError(f"dataset {data.name}: the validation split is empty")
    return {"val_loss": loss_sum / total, "val_top1_err": 100 * wrong1 / total,
            "val_top5_err": 100 * wrong5 / total}


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


# ---------------------------------------------------------------------------
# Bookkeeping around the loop


def _plan_params(cfg: TrainConfig, plan: Plan) -> dict[str, Any]:
    """The params known before any data or model is loaded."""
    return {
        "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset, "seed": cfg.seed,
        "batch_size": plan.batch_size, "lr": plan.lr, "epochs": plan.epochs,
        "subset": cfg.subset, "momentum": plan.momentum, "weight_decay": plan.weight_decay,
        "nesterov": plan.nesterov, "label_smoothing": plan.label_smoothing,
        "schedule": plan.schedule.get("kind", "constant"),
    }


def _params(cfg: TrainConfig, plan: Plan, use_amp: bool, world: int,
            model: nn.Module, graphs: bool) -> dict[str, Any]:
    return {
        **_plan_params(cfg, plan), "amp_bf16": use_amp,
        "compile": cfg.compile, "step_path": "cuda-graphs" if graphs else "eager",
        "world_size": world, **model.senet_options,
    }


def _run_tags(cfg: TrainConfig, device: torch.device) -> dict[str, str]:
    from senet.tracking.store import TAG_DEVICE, TAG_GIT_COMMIT, TAG_VERSION, git_commit

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {TAG_VERSION: senet.__version__, TAG_GIT_COMMIT: git_commit(), TAG_DEVICE: name,
            **cfg.tags}


def _log_setup(tracker: Any, params: dict[str, Any], tags: dict[str, str], data: Any,
               history: list[dict[str, Any]]) -> None:
    """Tags (again: a resumed run may have moved machine), params and the dataset once the
    run is open."""
    tracker.set_tags(tags)
    tracker.log_params(params)
    if not history:
        tracker.log_dataset(data.name, data.source, data.digest, "training")
    else:
        tracker.log_missing_epochs(history, "val_top1_err")


def _epoch_line(epoch: int, epochs: int, metrics: dict[str, float],
                state: dict[str, Any]) -> str:
    left = (epochs - epoch) * state["wall"] / len(state["history"])
    return (f"epoch {epoch}/{epochs}  loss {metrics['train_loss']:.4f}  "
            f"train err {metrics['train_top1_err']:.2f}%  "
            f"val err {metrics['val_top1_err']:.2f}% (top-5 {metrics['val_top5_err']:.2f}%)  "
            f"{metrics['img_per_s']:.0f} img/s  ETA {format_duration(left)}")


def _summarise(state: dict[str, Any], counts: Any, cfg: TrainConfig, plan: Plan) -> dict:
    history = state["history"]
    last = history[-1]
    best = min(history, key=lambda h: h["val_top1_err"])
    return {
        "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed,
        "final_val_top1_err": last["val_top1_err"], "final_val_top5_err": last["val_top5_err"],
        "best_val_top1_err": best["val_top1_err"], "best_val_top5_err": best["val_top5_err"],
        "best_epoch": best["epoch"], "epochs_done": state["epoch"], "epochs": plan.epochs,
        "params": counts.params, "gmacs": counts.gmacs, "wall_time_s": state["wall"],
        "mlflow_run_id": state["run_id"], "status": "FINISHED",
    }


def _write_failed_summary(out: Path, state: dict[str, Any], exc: TrainingFailed, counts: Any,
                          cfg: TrainConfig, plan: Plan) -> None:
    failed = {"status": "FAILED", "reason": str(exc), "epochs_done": state["epoch"],
              "mlflow_run_id": state["run_id"]}
    if state["history"]:
        failed = {**_summarise(state, counts, cfg, plan), **failed}
    (out / "summary.json").write_text(json.dumps(failed, indent=2))


def _log_results(tracker: Any, model: nn.Module, data: Any, out: Path, summary: dict) -> None:
    """Final metrics, weights, excitation statistics and the summary; the run itself is
    closed by ``tracked_run``. Idempotent: a finish interrupted and resumed logs each final
    metric once (artifacts are overwritten in place)."""
    from senet.engine import checkpoint
    from senet.excitation.probe import excitation_stats
    from senet.models import se_blocks

    tracker.log_metrics_once({k: float(summary[k]) for k in (
        *FINAL_METRICS, "params", "gmacs", "wall_time_s")})
    weights = out / "weights.pt"
    checkpoint.atomic_save(model.state_dict(), weights)  # a full disk: one line, no half file
    tracker.log_artifact(weights, "model")
    tracker.log_artifact(out / "config.json")
    if se_blocks(model):
        from senet.excitation.stats import ARTIFACT_PATH

        stats = excitation_stats(model, data.val_batches(), data.class_names)
        path = stats.save(out / Path(ARTIFACT_PATH).name)
        tracker.log_artifact(path, str(Path(ARTIFACT_PATH).parent))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    tracker.log_artifact(out / "summary.json")
