"""Read-only view of the grid queue: the state of each (point, seed) slot.

Only read; reaping stale tickets is the job of workers and `senet status`.
"""

from __future__ import annotations

import time
from pathlib import Path

from analysis.tables import QueueStatus
from senet.errors import SenetError


class QueueReader:
    """Opens the queue storage once; ``for_grid`` gives a lookup per grid."""

    def __init__(self, storage_url: str | None) -> None:
        from senet.queue.storage import open_storage
        from senet.urls import DEFAULT_STORAGE, redact, resolve_storage

        url = resolve_storage(storage_url)
        self.where = redact(url)
        # Only read a journal that exists: opening one would create it, and a tables run
        # must not leave an empty queue behind. A default one that is not there is no queue;
        # one the user named is an error.
        if "://" not in url and not Path(url).is_file() and url == DEFAULT_STORAGE:
            self.storage = None
        else:
            self.storage = open_storage(url, create=False)  # a mistyped --storage: one line

    def for_grid(self, grid: str) -> tuple[QueueStatus | None, str]:
        """The lookup for ``grid`` and, when there is none, why (for the table's notes)."""
        from senet.queue.tickets import GridQueue, grace_period, slot_state

        if self.storage is None:
            return None, ""
        try:
            queue = GridQueue.open(self.storage, grid)
        except SenetError:
            return None, f"grid not found in queue storage {self.where}"
        slots = queue.slots()
        grace = grace_period()

        def lookup(point: str, seed: int) -> tuple[str, str] | None:
            tickets = slots.get((point, seed))
            if not tickets:
                return None
            state = slot_state(tickets)
            latest = max(tickets, key=lambda t: t.number)
            if state == "done":
                return "done in queue", "no finished MLflow run found"
            if state == "failed":
                return "failed", latest.reason or "no reason recorded"
            if state == "running":
                now = time.time()
                live = [t.last_alive() or 0 for t in tickets]
                silent = now - max(live)
                if not any(t.is_live(now, grace) for t in tickets):
                    return "running", f"no heartbeat for {silent:.0f}s (worker lost?)"
            return state, ""

        return lookup, ""
