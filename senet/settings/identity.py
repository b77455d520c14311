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
        "preset": {k: v for k, v in preset.items() if k != "description"},
    }


def key_of(resolved: dict[str, Any], seed: int) -> str:
    canonical = json.dumps([resolved, int(seed)], sort_keys=True, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


def training_key(settings: dict[str, Any], seed: int) -> str:
    """The stable key of one training: resolved settings plus seed."""
    return key_of(resolved_settings(settings), seed)
