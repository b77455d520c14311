"""Learning-rate schedules as plain functions of (epoch, step), so that a resumed run
sees exactly the rates an uninterrupted run would. Only the plateau schedule has state,
and it is saved in the checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from senet.errors import SenetError

KINDS = ("multistep", "step", "cosine", "plateau", "constant")


@dataclass
class Schedule:
    kind: str
    base_lr: float
    epochs: int
    steps_per_epoch: int
    gamma: float = 0.1
    milestones: tuple[float, ...] = ()
    step_size: int = 30
    warmup_lr: float = 0.0
    warmup_iters: int = 0
    patience: int = 5
    threshold: float = 1e-3
    max_drops: int = 3
    stop_after_last_plateau: bool = False
    # plateau state
    drops: int = 0
    best_loss: float = math.inf
    bad_epochs: int = 0
    finished: bool = False

    @classmethod
    def from_preset(
        cls, section: dict[str, Any], base_lr: float, epochs: int, steps_per_epoch: int,
        warmup: bool,
    ) -> Schedule:
        section = dict(section)
        kind = section.pop("kind", "constant")
        if kind not in KINDS:
            raise SenetError(f"preset schedule.kind={kind!r}: valid kinds are {', '.join(KINDS)}")
        section.pop("warmup_min_depth", None)
        if not warmup:
            section.pop("warmup_lr", None)
            section.pop("warmup_iters", None)
        milestones = tuple(section.pop("milestones", ()))
        # Milestones below 1 are fractions of the run; others are epoch numbers.
        milestones = tuple(m * epochs if m < 1 else m for m in milestones)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(section) - known
        if unknown:
            raise SenetError(f"preset schedule: unknown keys {', '.join(sorted(unknown))}")
        return cls(kind=kind, base_lr=base_lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                   milestones=milestones, **section)

    def lr(self, epoch: int, step: int) -> float:
        """Rate for ``step`` (0-based) of ``epoch`` (1-based)."""
        iteration = (epoch - 1) * self.steps_per_epoch + step
        if iteration < self.warmup_iters:
            return self.warmup_lr
        done = epoch - 1  # completed epochs
        if self.kind == "multistep":
            return self.base_lr * self.gamma ** sum(done >= m for m in self.milestones)
        if self.kind == "step":
            return self.base_lr * self.gamma ** (done // self.step_size)
        if self.kind == "cosine":
            total = self.epochs * self.steps_per_epoch - self.warmup_iters
            t = (iteration - self.warmup_iters) / max(1, total)
            return 0.5 * self.base_lr * (1 + math.cos(math.pi * t))
        if self.kind == "plateau":
            return self.base_lr * self.gamma**self.drops
        return self.base_lr

    def end_epoch(self, val_loss: float) -> None:
        """Plateau bookkeeping: drop the rate after ``patience`` epochs without progress."""
        if self.kind != "plateau":
            return
        if val_loss < self.best_loss * (1 - self.threshold):
            self.best_loss, self.bad_epochs = val_loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.bad_epochs = 0
            if self.drops >= self.max_drops:
                self.finished = self.stop_after_last_plateau
            else:
                self.drops += 1

    def state_dict(self) -> dict[str, Any]:
        return {"drops": self.drops, "best_loss": self.best_loss,
                "bad_epochs": self.bad_epochs, "finished": self.finished}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
