"""Checkpoint files of one run: written atomically, read with one-line errors, and
carrying the global RNG states so a resumed run continues where it stopped."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from senet.errors import SenetError


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a kill mid-write never leaves a half checkpoint behind


def load(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise SenetError(f"cannot read checkpoint {path}: {exc}; delete it") from None


def rng_state() -> dict[str, Any]:
    """Global RNG states. Batches and augmentation draw from (seed, epoch) generators and
    need none of these; they are kept so that any global randomness (dropout in a user's
    model, say) also resumes where it stopped."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng: dict[str, Any] | None) -> None:
    if not rng:
        return
    torch.set_rng_state(rng["torch"].cpu())
    random.setstate(rng["python"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def save_training(path: Path, *, model: torch.nn.Module, optimizer: Any, schedule: Any,
                  state: dict[str, Any]) -> None:
    """Everything a resumed run needs, after a finished epoch."""
    atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict(), "state": state, "rng": rng_state()}, path)


def restore_training(path: Path, device: torch.device, *, model: torch.nn.Module,
                     optimizer: Any, schedule: Any) -> dict[str, Any]:
    """Load ``path`` into the model, optimizer, schedule and RNGs; returns the run state."""
    ckpt = load(path, device)
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = " ".join(str(exc).split())[:160]
        raise SenetError(f"checkpoint {path} does not fit this model and its settings "
                         f"({first}); resume with the settings it was made with, or give "
                         "another --out") from None
    set_rng_state(ckpt.get("rng"))
    return ckpt["state"]
