"""Progress display shared by training and the grid workers (stdlib only: cheap to import)."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``1m15s``, ``3700`` -> ``1h01m``; ``None`` (unknown) -> ``?``."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class EpochBar:
    """A one-line bar within an epoch, drawn only when attached to a terminal."""

    def __init__(self, total: int, epoch: int, epochs: int) -> None:
        self.total, self.label = total, f"epoch {epoch}/{epochs}"
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def update(self, step: int, loss: float | None = None) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and step < self.total):
            return
        self.last = now
        filled = int(30 * step / max(1, self.total))
        extra = f" loss {loss:.3f}" if loss is not None else ""
        print(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {step}/{self.total}{extra}",
              end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print("\r" + " " * 80 + "\r", end="", file=sys.stderr, flush=True)
