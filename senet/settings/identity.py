"""A training's identity: its fully resolved settings plus its seed, as a stable key.

Grid points that would train the same network on the same data under the same
protocol get the same key, whatever grid, label or spelling they come from
(`reduction = 16` and no `reduction` at all are the same SE-ResNet-50). The queue
trains a key once, run folders are named by it, and every table that contains the
point reads the same run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# How a training runs, not what it trains: these never change the key.
EXECUTION_ONLY = ("compile", "workers", "fused_se")
KEY_LENGTH = 16


def resolved_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What a grid point's settings resolve to once its preset and the model's option
    defaults are applied. Raises SenetError for settings that cannot be resolved."""
    from senet.models import validate_options
    from senet.settings.config import TrainConfig, load_preset, split_settings
    from senet.settings.resolve import resolve_run

    model = settings["model"]
    cfg = TrainConfig(**split_settings(settings))
    preset = load_preset(cfg.preset)
    plan = resolve_run(cfg, preset)
    resolved_options = validate_options(model, plan.model_options)
    if "num_classes" not in plan.model_options:
        resolved_options.pop("num_classes")  # the dataset decides it
    return {
        "model": model,
        "model_options": resolved_options,
        "dataset": cfg.dataset,
        "subset": cfg.subset,
        "amp": settings.get("amp"),
        "epochs": plan.epochs,
        "batch_size": plan.batch_size,
        "lr": plan.lr,
        "momentum": plan.momentum,
        "weight_decay": plan.weight_decay,
        "nesterov": plan.nesterov,
        "label_smoothing": plan.label_smoothing,
        "schedule": plan.schedule,
        "warmup": plan.warmup,
        # Anything else the preset holds (augmentation, ...) is part of the protocol too.
        "preset": protocol_of(preset, model),
    }


def protocol_of(preset: dict[str, Any], model: str) -> dict[str, Any]:
    """The part of a preset that can change how ``model`` trains: all of it but its
    description and the [model] options the model does not have. A plain ResNet has no SE
    bias, so `cifar-preact` and `cifar-preact-ablation` (which only adds `bias = false`)
    train it identically and give it one key. The options that do apply are in
    model_options already; they stay here too, so that the keys of SE trainings queued
    before this rule are unchanged."""
    from senet.models import valid_option_names

    out = {k: v for k, v in preset.items() if k not in ("description", "model")}
    applicable = set(valid_option_names(model))
    options = {k: v for k, v in preset.get("model", {}).items() if k in applicable}
    if options:
        out["model"] = options
    return out


def key_of(resolved: dict[str, Any], seed: int) -> str:
    canonical = json.dumps([resolved, int(seed)], sort_keys=True, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


def training_key(settings: dict[str, Any], seed: int) -> str:
    """The stable key of one training: resolved settings plus seed."""
    return key_of(resolved_settings(settings), seed)
