"""Checkpoint files of one run: written atomically, read with one-line errors, and
carrying the global RNG states so a resumed run continues where it stopped."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import torch

from senet.disk import write_error
from senet.errors import SenetError, one_line


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file renamed into place, so a kill or
    a full disk mid-write never leaves a half checkpoint behind (the previous one stays).
    A failed write removes the temporary file and is one line naming the disk."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            sink = _Sink(fh)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                # torch reports a failed write as "[enforce fail at inline_container.cc]
                # unexpected pos"; the OSError underneath says what happened.
                if sink.error is None:
                    raise
                raise sink.error from None
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        message = write_error(exc, path)  # before the removal frees the space it took
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SenetError(message) from None


class _Sink:
    """The file torch.save writes to, keeping the first OSError a write raised."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def load(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint senet wrote: tensors, numbers, strings, lists and dicts only. With
    ``weights_only`` torch refuses any other object before building it, so a crafted file
    (the runs folder may be shared between machines) cannot run code here."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL [\w.]+", str(exc))
        if found is None:
            raise SenetError(damaged(path, exc)) from None
        raise SenetError(
            f"checkpoint {path} holds objects other than tensors and numbers ({found.group(0)})"
            ": refused without running any of it; senet writes no such file: if you did not "
            f"put it there, delete it and {RESTART_ADVICE}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise SenetError(damaged(path, exc)) from None


def damaged(path: Path, exc: BaseException) -> str:
    reason = one_line(exc, limit=160)
    if isinstance(exc, pickle.UnpicklingError):
        # torch wraps the reason ("Unsupported operand 103") in paragraphs about its
        # weights_only default; keep the reason alone.
        parts = [p for p in str(exc).split("\n\n") if p.strip()
                 and not p.startswith(("Weights only load failed", "Check the documentation"))]
        reason = one_line(Exception(parts[0] if parts else "not a torch file"), limit=160)
    return f"cannot read checkpoint {path} ({reason}): it is damaged; delete it and " \
           f"{RESTART_ADVICE}"


# After the checkpoint is deleted, --resume starts at epoch 1 again; the epochs the old
# run logged would repeat, so the training continues in a new MLflow run (see
# senet.tracking.restart) and the old one goes to MLflow's trash.
RESTART_ADVICE = ("run the same command with --resume: the training starts over at epoch 1 "
                  "in a new MLflow run")


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
