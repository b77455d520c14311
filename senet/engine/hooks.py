"""What happens around the epoch loop, passed in as hooks: checkpoints and the run's
files, the MLflow record, and the epoch line. Each hook sees one copy at a time.

A hook has five moments: ``start`` (the run opens or resumes), ``epoch`` (an epoch is
done and its numbers are final), ``end`` (the training stopped early: failed, pruned,
stopped on request), ``finish`` (it trained to the end) and ``already_finished`` (asked
before a finished training is opened again: True means nothing is left to do).
Before each write a hook calls ``copy.guard()``: a training that another worker now owns
is never written to (``senet.errors.Fenced``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

import senet
from senet.errors import SenetError, TrainingFailed, TrainingStopped
from senet.progress import format_duration

FINAL_METRICS = ("final_val_top1_err", "final_val_top5_err", "best_val_top1_err",
                 "best_val_top5_err")
# Params that may change between a run and its resume (another machine, another path).
EXECUTION_PARAMS = frozenset({"compile", "amp_bf16", "world_size", "step_path", "pack_size",
                              "path", "fused_se"})
# A cross-entropy that still learns stays within a few units of ln(classes) (2.3 for 10,
# 6.9 for 1000). Above this the logits are of order 1e4: the weights have blown up, even
# where float64 sums keep the number finite (`--lr 1e6` gives losses near 1e26).
DIVERGED_LOSS = 1e4


class Hook:
    """The no-op base: a hook overrides the moments it cares about."""

    def already_finished(self, c: Any, run: Any) -> bool:
        return True

    def start(self, c: Any, run: Any, pack_size: int) -> None: ...

    def epoch(self, c: Any, run: Any, epoch: int, metrics: dict[str, float],
              pack_size: int) -> None: ...

    def end(self, c: Any, run: Any, exc: BaseException) -> None: ...

    def finish(self, c: Any, run: Any, summary: dict[str, Any]) -> None: ...


# ---------------------------------------------------------------------------
# Checks and summaries of one copy


def keep_note(ckpt_path: Path) -> str:
    if ckpt_path.exists():
        return f"the checkpoint of the last good epoch is kept in {ckpt_path}"
    return "no checkpoint was written (it diverged in its first epoch)"


def check_finite(values: dict[str, float], where: str, ckpt_path: Path) -> None:
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
        raise TrainingFailed(
            f"non-finite {', '.join(bad)} in {where}: the training diverged; "
            f"{keep_note(ckpt_path)}; lower the learning rate")


def check_losses(values: dict[str, float], where: str, ckpt_path: Path) -> None:
    check_finite(values, where, ckpt_path)
    huge = sorted(k for k, v in values.items() if k.endswith("loss") and v > DIVERGED_LOSS)
    if huge:
        shown = ", ".join(f"{k} {values[k]:.3g}" for k in huge)
        raise TrainingFailed(
            f"{shown} in {where}: the training diverged (a loss above {DIVERGED_LOSS:g}); "
            f"{keep_note(ckpt_path)}; lower the learning rate")


def params_of(cfg: Any, settings: Any) -> dict[str, Any]:
    """The params known before any data or model is loaded."""
    return {
        "model": cfg.model, "dataset": cfg.dataset, "preset": cfg.preset, "seed": cfg.seed,
        "batch_size": settings.batch_size, "lr": settings.lr, "epochs": settings.epochs,
        "subset": cfg.subset, "momentum": settings.momentum,
        "weight_decay": settings.weight_decay, "nesterov": settings.nesterov,
        "label_smoothing": settings.label_smoothing, "schedule": settings.schedule_kind,
    }


def run_params(c: Any, run: Any, pack_size: int) -> dict[str, Any]:
    """Every param of a copy's run: its settings, how it ran, its model's options."""
    return {**params_of(c.cfg, c.settings or run.settings), "amp_bf16": run.amp_dtype is not None,
            "compile": run.compiled, "step_path": "cuda-graphs" if run.graphs else "eager",
            "world_size": run.world, "pack_size": pack_size, "fused_se": c.cfg.fused_se,
            "path": "packed" if pack_size > 1 else "alone", **c.model.senet_options}


def summarise(c: Any, run: Any) -> dict[str, Any]:
    history = c.state["history"]
    last = history[-1]
    best = min(history, key=lambda h: h["val_top1_err"])
    return {
        "model": c.cfg.model, "dataset": c.cfg.dataset, "seed": c.cfg.seed,
        "final_val_top1_err": last["val_top1_err"], "final_val_top5_err": last["val_top5_err"],
        "best_val_top1_err": best["val_top1_err"], "best_val_top5_err": best["val_top5_err"],
        "best_epoch": best["epoch"], "epochs_done": c.state["epoch"],
        "epochs": run.settings.epochs, "params": c.counts.params, "gmacs": c.counts.gmacs,
        "wall_time_s": c.state["wall"], "mlflow_run_id": c.state["run_id"], "status": "FINISHED",
    }


def write_failed_summary(c: Any, run: Any, exc: TrainingFailed) -> None:
    failed = {"status": "FAILED", "reason": str(exc), "epochs_done": c.state["epoch"],
              "mlflow_run_id": c.state["run_id"]}
    if c.state["history"]:
        failed = {**summarise(c, run), **failed}
    c.guard()
    (c.out / "summary.json").write_text(json.dumps(failed, indent=2))


def check_same_settings(out: Path, params: dict[str, Any], resume: bool,
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


def recorded_run_id(out: Path) -> str | None:
    try:
        return json.loads((out / "run.json").read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None


# ---------------------------------------------------------------------------
# The hooks


class CheckpointHook(Hook):
    """The run's folder: settings (config.json), run id (run.json), the checkpoint after
    every epoch, and at the end the weights and summary.json."""

    def start(self, c: Any, run: Any, pack_size: int) -> None:
        c.guard()
        check_same_settings(c.out, run_params(c, run, pack_size), c.cfg.resume, {
            "config": c.cfg.to_dict(), "gmacs": c.counts.gmacs, "params": c.counts.params,
            **({"packed_with": pack_size} if pack_size > 1 else {})})
        if c.state["run_id"] is None and c.cfg.resume:
            c.state["run_id"] = recorded_run_id(c.out)  # killed before its first checkpoint
        if c.ckpt.exists():
            run.say(c.index, f"resuming {c.out} after epoch {c.state['epoch']}/"
                             f"{run.settings.epochs}")

    def epoch(self, c: Any, run: Any, epoch: int, metrics: dict[str, float],
              pack_size: int) -> None:
        from senet.engine import checkpoint

        c.guard()
        checkpoint.save_training(c.ckpt, model=c.model, optimizer=c.optimizer,
                                 schedule=c.schedule, state=c.state)

    def finish(self, c: Any, run: Any, summary: dict[str, Any]) -> None:
        from senet.engine import checkpoint

        c.guard()
        # Written whole or not at all: a full disk is one line, and no half file is left.
        checkpoint.atomic_save(c.model.state_dict(), c.out / "weights.pt")
        (c.out / "summary.json").write_text(json.dumps(summary, indent=2))


class RecordHook(Hook):
    """The copy's MLflow run (``senet.tracking.recorder.Recorder``): opened with its tags,
    params and dataset, one metrics row per epoch, the final results and artifacts, and
    closed FINISHED, FAILED or KILLED."""

    def already_finished(self, c: Any, run: Any) -> bool:
        from senet.tracking.recorder import Recorder

        run_id = c.state["run_id"]
        if not Recorder(c.cfg.tracking_uri, c.cfg.experiment).is_finished(run_id):
            return False
        run.say(c.index, f"{c.out}: this training already finished after epoch "
                         f"{c.state['epoch']} (MLflow run {run_id}); nothing to do")
        return True

    def start(self, c: Any, run: Any, pack_size: int) -> None:
        from senet.tracking.recorder import Recorder
        from senet.tracking.store import TAG_FAIL_REASON, TAG_STOP_REASON

        c.guard()
        tags = run_tags(c.cfg, run.device, pack_size)
        c.recorder = rec = Recorder(c.cfg.tracking_uri, c.cfg.experiment)
        system = os.environ.get("SENET_SYSTEM_METRICS", "1") != "0" and c.index == 0
        if not c.state["history"]:  # epoch 1 again: never in a run that logged epochs
            from senet.tracking.restart import run_to_continue

            c.state["run_id"] = run_to_continue(rec, c.state["run_id"], tags,
                                                lambda msg: run.say(c.index, msg))
        c.state["run_id"] = rec.start(run_id=c.state["run_id"], tags=tags,
                                      parent_run_id=c.cfg.parent_run_id,
                                      run_name=c.cfg.run_name or c.out.name,
                                      system_metrics=system)
        # The run id beside the checkpoint as soon as the run starts, so a training killed
        # before its first checkpoint continues the same MLflow run on --resume.
        (c.out / "run.json").write_text(json.dumps({"run_id": c.state["run_id"]}))
        # Tags again (a resumed run may have moved machine), minus a past attempt's reason.
        rec.set_tags(tags)
        rec.delete_tags([TAG_FAIL_REASON, TAG_STOP_REASON])
        rec.log_params(run_params(c, run, pack_size))
        if not c.state["history"]:
            rec.log_dataset(c.data.name, c.data.source, c.data.digest, "training")
        else:
            rec.log_missing_epochs(c.state["history"], "val_top1_err")
        counts = c.counts
        packed = f", packed with {pack_size - 1} other(s)" if pack_size > 1 else ""
        run.say(c.index, f"{c.cfg.model} on {c.data.name}: {counts.params / 1e6:.2f}M params, "
                         f"{counts.gmacs:.3f} GMACs, {c.data.train_len} train / "
                         f"{c.data.val_len} val images, {run.settings.epochs} epochs of "
                         f"{run.steps} steps, device {run.device} ({run.path}{packed}), "
                         f"run {c.state['run_id']}")

    def epoch(self, c: Any, run: Any, epoch: int, metrics: dict[str, float],
              pack_size: int) -> None:
        c.guard()
        c.recorder.log_metrics(metrics, step=epoch)

    def end(self, c: Any, run: Any, exc: BaseException) -> None:
        from senet.tracking.store import TAG_FAIL_REASON, TAG_STOP_REASON

        if c.recorder is None:
            return
        if isinstance(exc, TrainingStopped):
            status, tags = "KILLED", {TAG_STOP_REASON: str(exc)[:500]}
        elif isinstance(exc, TrainingFailed):
            status, tags = "FAILED", {TAG_FAIL_REASON: str(exc)[:500]}
        else:
            status, tags = "FAILED", {TAG_FAIL_REASON: f"{type(exc).__name__}: {exc}"[:500]}
        tags.update(getattr(exc, "run_tags", {}))  # e.g. the epoch a search pruned it at
        c.recorder.close_quietly(status, tags)
        c.recorder = None

    def finish(self, c: Any, run: Any, summary: dict[str, Any]) -> None:
        """Final metrics, weights, excitation statistics and the summary, then FINISHED.
        Idempotent: a finish interrupted and resumed logs each final metric once
        (artifacts are overwritten in place)."""
        from senet.models import se_blocks

        if c.recorder is None:  # rank > 0
            return
        rec = c.recorder
        c.guard()
        rec.log_metrics_once({k: float(summary[k]) for k in (
            *FINAL_METRICS, "params", "gmacs", "wall_time_s")})
        rec.log_artifact(c.out / "weights.pt", "model")
        rec.log_artifact(c.out / "config.json")
        if se_blocks(c.model):
            from senet.excitation.probe import excitation_stats
            from senet.excitation.stats import ARTIFACT_PATH

            stats = excitation_stats(c.model, c.data.val_batches(), c.data.class_names)
            path = stats.save(c.out / Path(ARTIFACT_PATH).name)
            rec.log_artifact(path, str(Path(ARTIFACT_PATH).parent))
        rec.log_artifact(c.out / "summary.json")
        c.guard()
        rec.finish("FINISHED")
        c.recorder = None


class EpochLine(Hook):
    """One line per epoch: losses, errors, speed and the time left."""

    def epoch(self, c: Any, run: Any, epoch: int, metrics: dict[str, float],
              pack_size: int) -> None:
        epochs, state = run.settings.epochs, c.state
        left = (epochs - epoch) * state["wall"] / len(state["history"])
        speed = (f"{metrics['img_per_s']:.0f} img/s" if pack_size == 1 else
                 f"{metrics['img_per_s'] * pack_size:.0f} img/s (pack of {pack_size})")
        run.say(c.index, f"epoch {epoch}/{epochs}  loss {metrics['train_loss']:.4f}  "
                         f"train err {metrics['train_top1_err']:.2f}%  "
                         f"val err {metrics['val_top1_err']:.2f}% "
                         f"(top-5 {metrics['val_top5_err']:.2f}%)  {speed}  "
                         f"ETA {format_duration(left)}")


def run_tags(cfg: Any, device: torch.device, pack_size: int) -> dict[str, str]:
    from senet.tracking.store import TAG_DEVICE, TAG_GIT_COMMIT, TAG_VERSION, git_commit

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {TAG_VERSION: senet.__version__, TAG_GIT_COMMIT: git_commit(), TAG_DEVICE: name,
            "senet.pack_size": str(pack_size), **cfg.tags}
