"""Which trainings can share one packed model (``senet.engine.packed``), decided from their
settings alone, before any model is built: for the worker, to claim K tickets of
different grid points at once, and for ``senet plan``, to cost a grid trained in packs.

Trainings can share a pack when they train the same architecture on the same data with
the same protocol, and differ only in their seed and in ``PACKABLE_OPTIONS`` (squeeze avg
or max, inner activation, gate, FC bias, reduction ratio), and no two are the same
training. The per-copy run bookkeeping (output folder, tags, run name, MLflow experiment
and parent run) may differ too: each copy keeps its own run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from senet.engine.packed import PACKABLE_OPTIONS
from senet.settings.config import TrainConfig

# TrainConfig fields that each copy of a pack has for itself.
PER_COPY_FIELDS = ("seed", "out", "tags", "run_name", "resume", "parent_run_id", "experiment")


@dataclass(frozen=True)
class PackKey:
    """What a training must share with the others of its pack, and what it owns."""

    shared: str  # canonical JSON of everything that must be equal
    own: tuple[tuple[str, Any], ...]  # its packable options, resolved
    seed: int
    label: str  # how the one-line reason names this training
    plateau: bool


def _resolved_of_config(cfg: TrainConfig) -> dict[str, Any]:
    from senet.settings.config import GRID_KEYS
    from senet.settings.identity import resolved_settings

    settings = {k: getattr(cfg, k) for k in GRID_KEYS}
    return resolved_settings({**settings, **cfg.model_options})


def key_of_resolved(resolved: Mapping[str, Any], seed: int, execution: Mapping[str, Any],
                    label: str) -> PackKey:
    """The PackKey of a training given as ``senet.settings.identity.resolved_settings``
    output (what ``senet plan`` holds), its seed and its execution settings."""
    options = dict(resolved["model_options"])
    own = tuple(sorted((k, options.pop(k)) for k in PACKABLE_OPTIONS if k in options))
    # A squeeze of none does not pack with a pooled one (packed_se); keep the kind shared.
    squeeze = dict(own).get("squeeze")
    options["squeeze kind"] = None if squeeze is None else squeeze == "none"
    shared = {**{k: v for k, v in resolved.items() if k != "model_options"},
              "model_options": options, "execution": dict(execution)}
    plateau = dict(resolved.get("schedule") or {}).get("kind") == "plateau"
    return PackKey(json.dumps(shared, sort_keys=True, default=str), own, int(seed), label,
                   plateau)


def key_of_config(cfg: TrainConfig, label: str | None = None) -> PackKey:
    """The PackKey of one TrainConfig (the worker's ``train_config`` of a ticket)."""
    execution = {k: v for k, v in cfg.to_dict().items()
                 if k not in PER_COPY_FIELDS and k != "model_options"}
    given = "".join(f" {k}={v}" for k, v in sorted(cfg.model_options.items()))
    return key_of_resolved(_resolved_of_config(cfg), cfg.seed, execution,
                           label or f"{cfg.model}{given} seed {cfg.seed}")


def _first_difference(a: str, b: str) -> str:
    left, right = json.loads(a), json.loads(b)
    flat_a = {**left.pop("execution"), **left.pop("model_options"), **left}
    flat_b = {**right.pop("execution"), **right.pop("model_options"), **right}
    for key in sorted(set(flat_a) | set(flat_b)):
        if flat_a.get(key) != flat_b.get(key):
            return f"{key} ({flat_a.get(key)!r} vs {flat_b.get(key)!r})"
    return "their settings"


def refusal(keys: Sequence[PackKey]) -> str | None:
    """Why the trainings of ``keys`` cannot share one pack (one line), or None."""
    if not keys:
        return "no trainings to pack"
    first = keys[0]
    seen: dict[tuple[Any, ...], str] = {}
    for key in keys:
        if key.plateau and len(keys) > 1:
            return (f"{key.label}: its preset uses the plateau schedule, whose rate follows "
                    "each training's own validation loss; it trains alone")
        if key.shared != first.shared:
            return (f"{first.label} and {key.label} differ in "
                    f"{_first_difference(first.shared, key.shared)}; only the seed and "
                    f"{', '.join(PACKABLE_OPTIONS)} may differ within a pack")
        identity = (key.own, key.seed)
        if identity in seen:
            return f"{key.label} and {seen[identity]} are the same training (settings and seed)"
        seen[identity] = key.label
    return None


def why_not_one_pack(items: Sequence[TrainConfig | PackKey]) -> str | None:
    """Why these trainings cannot share one packed model, in one line; None if they can.

    ``items`` are TrainConfigs (as the worker builds them for its tickets) or PackKeys.
    Two copies may not write to the same output folder either.
    """
    items = list(items)
    outs = [str(c.out) for c in items if isinstance(c, TrainConfig) and c.out is not None]
    if len(set(outs)) != len(outs):
        return "two trainings share one --out folder; each copy needs its own"
    return refusal([c if isinstance(c, PackKey) else key_of_config(c) for c in items])


def pack_groups(keys: Sequence[PackKey], size: int) -> list[list[int]]:
    """``keys`` split into packs of at most ``size`` trainings that can share one (by
    index, in order): each training joins the first open pack that takes it."""
    groups: list[list[int]] = []
    for i, key in enumerate(keys):
        for group in groups:
            if len(group) < size and refusal([keys[j] for j in group] + [key]) is None:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups
