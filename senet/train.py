"""The training engine: one run, end to end, resumable, tracked in MLflow.

``run_training`` reads top to bottom: set-up, resume, then the epoch loop (train,
evaluate, checkpoint, log). Checkpoint files are ``senet.checkpoint``; opening and closing
the MLflow run is ``senet.tracking.tracked_run``; one optimisation step is ``train_step``.
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
import torch.nn.functional as F
from torch import nn

import senet
from senet.config import TrainConfig, load_preset
from senet.errors import SenetError, TrainingFailed, TrainingStopped
from senet.progress import EpochBar, format_duration


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
    batch = int(cfg.batch_size or preset.get("batch_size", 128))
    epochs = int(cfg.epochs or preset.get("epochs", 1))
    if batch < 1 or epochs < 1:
        raise SenetError("batch_size and epochs must be >= 1")
    if cfg.lr is not None:
        lr = float(cfg.lr)
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


def _topk_errors(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == y[:, None]
    return int((~hit[:, 0]).sum()), int((~hit.any(1)).sum())


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

    ``on_epoch(epoch, metrics)`` runs on rank 0 after each epoch is checkpointed and
    logged (a search's pruner); an exception it raises ends the training there.

    Raises TrainingFailed on a non-finite loss (the MLflow run is marked FAILED and the
    last good checkpoint is kept) and TrainingStopped when ``should_stop()`` says so.
    """
    from senet import checkpoint
    from senet.data import load_data
    from senet.flops import count
    from senet.models import build
    from senet.schedule import Schedule
    from senet.tracking import RunTracker, tracked_run

    rank, world = _distributed()
    is_main = rank == 0
    say = (log or (lambda msg: print(msg, flush=True))) if is_main else (lambda msg: None)

    # -- set-up
    plan = make_plan(cfg, load_preset(cfg.preset))
    tracker = RunTracker(cfg.tracking_uri, cfg.experiment) if is_main else None
    device = pick_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise SenetError(
            f"{ckpt_path} exists: add --resume to continue that run, or give another --out"
        )

    data = load_data(cfg.dataset, root=cfg.data_root, device=device, subset=cfg.subset,
                     seed=cfg.seed, batch_size=plan.batch_size, workers=cfg.workers)
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed
    model = build(cfg.model, **{**plan.model_options, "num_classes": data.num_classes})
    counts = count(model, data.image_size)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=plan.lr, momentum=plan.momentum,
                                weight_decay=plan.weight_decay, nesterov=plan.nesterov)
    steps = data.steps_per_epoch()
    if steps < 1:
        raise SenetError(
            f"dataset {data.name}: {data.train_len} training images give no full batch of "
            f"{plan.batch_size}; lower --batch-size or raise --subset"
        )
    schedule = Schedule.from_preset(plan.schedule, plan.lr, plan.epochs, steps, plan.warmup)

    # -- resume
    state: dict[str, Any] = {"epoch": 0, "history": [], "run_id": None, "wall": 0.0}
    if ckpt_path.exists():
        state = checkpoint.restore_training(ckpt_path, device, model=model,
                                            optimizer=optimizer, schedule=schedule)
        say(f"resuming {out} after epoch {state['epoch']}/{plan.epochs}")

    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    def autocast():  # noqa: E306
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        train_model = torch.compile(train_model)
    params = _params(cfg, plan, use_amp, world, model)
    tags = _run_tags(cfg, device)

    # -- the epochs, inside the MLflow run (closed FINISHED, FAILED or KILLED on leaving)
    with tracked_run(tracker, run_id=state["run_id"], tags=tags,
                     parent_run_id=cfg.parent_run_id, run_name=cfg.run_name or out.name,
                     system_metrics=os.environ.get("SENET_SYSTEM_METRICS", "1") != "0",
                     ) as run_id:
        state["run_id"] = run_id
        if tracker:
            _log_setup(tracker, cfg, params, tags, counts, data, out, state["history"])
        say(f"{cfg.model} on {data.name}: {counts.params / 1e6:.2f}M params, "
            f"{counts.gmacs:.3f} GMACs, {data.train_len} train / {data.val_len} val images, "
            f"{plan.epochs} epochs of {steps} steps, device {device}, run {state['run_id']}")
        try:
            for epoch in range(state["epoch"] + 1, plan.epochs + 1):
                t0 = time.monotonic()
                train_stats = _train_epoch(train_model, optimizer, schedule, data, epoch, plan,
                                           autocast, world, rank, should_stop)
                train_time = time.monotonic() - t0
                val = _evaluate(model, data, autocast, world, rank)
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
                        on_epoch(epoch, metrics)
                if schedule.finished:
                    say(f"validation loss plateaued after {schedule.max_drops} drops: stopping")
                    break
        except TrainingFailed as exc:
            if is_main:
                _write_failed_summary(out, state, exc, counts, cfg, plan)
            raise
        summary = _summarise(state, counts, cfg, plan)
        if tracker:
            _log_results(tracker, model, data, out, summary)
    return summary


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
    lr: float, autocast: Any, label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step at learning rate ``lr``; returns (loss, logits), not synchronised."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast():
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def _train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, data: Any, epoch: int,
    plan: Plan, autocast: Any, world: int, rank: int,
    should_stop: Callable[[], bool] | None,
) -> dict[str, float]:
    model.train()
    progress = EpochBar(data.steps_per_epoch(), epoch, plan.epochs)
    loss_sum = torch.zeros((), dtype=torch.float64)
    wrong = torch.zeros((), dtype=torch.int64)
    seen = 0
    for step, (x, y) in enumerate(data.train_batches(epoch)):
        if world > 1:  # every rank draws the same batch and keeps its own slice
            x, y = x[rank::world], y[rank::world]
        lr = schedule.lr(epoch, step)
        loss, logits = train_step(model, optimizer, x, y, lr, autocast, plan.label_smoothing)
        loss_sum += loss.detach().double().cpu() * len(y)
        wrong += (logits.detach().argmax(1) != y).sum().cpu()
        seen += len(y)
        # Check every few steps: each check is a device sync.
        if step % 10 == 0 and not math.isfinite(float(loss_sum)):
            raise TrainingFailed(
                f"non-finite loss at epoch {epoch} step {step + 1} (lr {lr:g}); "
                "the last good checkpoint is kept; lower the learning rate and resume"
            )
        if should_stop and should_stop():
            raise TrainingStopped(f"stopped at epoch {epoch} step {step + 1} on request")
        progress.update(step + 1, float(loss) if progress.enabled else None)
    progress.close()
    if not math.isfinite(float(loss_sum)):
        raise TrainingFailed(
            f"non-finite loss in epoch {epoch}; the last good checkpoint is kept; "
            "lower the learning rate and resume"
        )
    return {"train_loss": float(loss_sum) / max(seen, 1),
            "train_top1_err": 100 * float(wrong) / max(seen, 1), "lr": schedule.lr(epoch, 0),
            "images": seen * world}


@torch.no_grad()
def _evaluate(
    model: nn.Module, data: Any, autocast: Any, world: int = 1, rank: int = 0
) -> dict[str, float]:
    """Validation loss and errors over the whole validation split. Under torchrun each
    rank evaluates its slice of every batch and the counts are summed over ranks, so every
    rank gets the same numbers (its plateau schedule steps on the same loss)."""
    model.eval()
    n = wrong1 = wrong5 = 0
    loss_sum = 0.0
    for x, y in data.val_batches():
        if world > 1:
            x, y = x[rank::world], y[rank::world]
            if len(y) == 0:
                continue
        with autocast():
            logits = model(x)
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        e1, e5 = _topk_errors(logits, y)
        wrong1, wrong5, n = wrong1 + e1, wrong5 + e5, n + len(y)
    model.train()
    if world > 1:
        device = next(model.parameters()).device
        totals = torch.tensor([loss_sum, wrong1, wrong5, n], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(totals)
        loss_sum, wrong1, wrong5, n = totals.tolist()
    if n == 0:
        raise SenetError(f"dataset {data.name}: the validation split is empty")
    return {"val_loss": loss_sum / n, "val_top1_err": 100 * wrong1 / n,
            "val_top5_err": 100 * wrong5 / n}


# ---------------------------------------------------------------------------
# Bookkeeping around the loop


def _params(cfg: TrainConfig, plan: Plan, use_amp: bool, world: int,
            model: nn.Module) -> dict[str, Any]:
    return {
        "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset, "seed": cfg.seed,
        "batch_size": plan.batch_size, "lr": plan.lr, "epochs": plan.epochs,
        "subset": cfg.subset, "momentum": plan.momentum, "weight_decay": plan.weight_decay,
        "nesterov": plan.nesterov, "label_smoothing": plan.label_smoothing,
        "schedule": plan.schedule.get("kind", "constant"), "amp_bf16": use_amp,
        "compile": cfg.compile, "world_size": world, **model.senet_options,
    }


def _run_tags(cfg: TrainConfig, device: torch.device) -> dict[str, str]:
    from senet.tracking import TAG_DEVICE, TAG_GIT_COMMIT, TAG_VERSION, git_commit

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {TAG_VERSION: senet.__version__, TAG_GIT_COMMIT: git_commit(), TAG_DEVICE: name,
            **cfg.tags}


def _log_setup(tracker: Any, cfg: TrainConfig, params: dict[str, Any], tags: dict[str, str],
               counts: Any, data: Any, out: Path, history: list[dict[str, Any]]) -> None:
    """Tags (again: a resumed run may have moved machine), params and the dataset once the
    run is open; config.json beside the run."""
    tracker.set_tags(tags)
    tracker.log_params(params)
    if not history:
        tracker.log_dataset(data.name, data.source, data.digest, "training")
    else:
        tracker.log_missing_epochs(history, "val_top1_err")
    (out / "config.json").write_text(json.dumps(
        {"config": cfg.to_dict(), "resolved": params, "gmacs": counts.gmacs,
         "params": counts.params}, indent=2, default=str))


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
    closed by ``tracked_run``."""
    from senet.models import se_blocks
    from senet.probe import excitation_stats

    tracker.log_metrics({k: float(summary[k]) for k in (
        "final_val_top1_err", "final_val_top5_err", "best_val_top1_err", "best_val_top5_err",
        "params", "gmacs", "wall_time_s")})
    weights = out / "weights.pt"
    torch.save(model.state_dict(), weights)
    tracker.log_artifact(weights, "model")
    tracker.log_artifact(out / "config.json")
    if se_blocks(model):
        from senet.excitations import ARTIFACT_PATH

        stats = excitation_stats(model, data.val_batches(), data.class_names)
        path = stats.save(out / Path(ARTIFACT_PATH).name)
        tracker.log_artifact(path, str(Path(ARTIFACT_PATH).parent))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    tracker.log_artifact(out / "summary.json")
