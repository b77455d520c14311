"""What a run's config and preset resolve to: the numbers the engine trains with.

The engine, the training key (``senet.settings.identity``) and ``senet work``'s memory
probe all read the resolved settings here, so none of them imports the engine to know
them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from senet.errors import SenetError
from senet.settings.config import TrainConfig, load_preset


@dataclass
class RunSettings:
    """What the preset and the config resolve to for one run."""

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

    @property
    def schedule_kind(self) -> str:
        return str(self.schedule.get("kind", "constant"))


def _depth(model_name: str) -> int:
    match = re.search(r"(\d+)", model_name)
    return int(match.group(1)) if match else 0


def resolve_run(cfg: TrainConfig, preset: dict[str, Any] | None = None) -> RunSettings:
    """``cfg`` under its preset (loaded by name when not given). Raises SenetError with one
    line for a setting that cannot be used."""
    from senet.models import valid_option_names, validate_options

    if preset is None:
        preset = load_preset(cfg.preset)
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
    return RunSettings(
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


def default_out(cfg: TrainConfig) -> Path:
    """A folder named after the run's settings, so re-running a command finds its checkpoint."""
    key = json.dumps(
        [cfg.model, sorted(cfg.model_options.items()), cfg.dataset, cfg.preset, cfg.epochs,
         cfg.batch_size, cfg.lr, cfg.subset], default=str,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    dataset = re.sub(r"[^A-Za-z0-9]+", "-", cfg.dataset).strip("-")
    return Path("runs") / f"{cfg.model}-{dataset}-{digest}-s{cfg.seed}"
