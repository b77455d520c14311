"""The fencing token of a claimed training: which ticket owns its run folder now.

Workers that lose their ticket (a long stall, a SIGSTOP) can wake up and go on writing
after another worker took the training over. Each claim therefore writes its ticket's
trial id into ``<run folder>/claim.json``. Trial ids grow with every ticket in a storage,
and a training taken back is requeued as a new ticket, so a later claim of the same
training always holds a larger id. Before every write the engine asks ``held()``: a
worker whose id is no longer the one in the file has been fenced off, and writes nothing
more to the checkpoint, the summary, the MLflow run or the ticket.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CLAIM_FILE = "claim.json"


def _read(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["trial_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Claim:
    folder: Path
    trial_id: int

    @classmethod
    def take(cls, folder: Path, trial_id: int) -> Claim:
        """Record ``trial_id`` as the folder's owner unless a newer claim is there already
        (then this claim is stale from the start and ``held()`` says so)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CLAIM_FILE
        current = _read(path)
        if current is None or current <= trial_id:
            tmp = path.with_name(f"{CLAIM_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"trial_id": trial_id}))
            os.replace(tmp, path)  # readers see the old token or the new one, never half
        return cls(folder, trial_id)

    def held(self) -> bool:
        current = _read(self.folder / CLAIM_FILE)
        return current is None or current == self.trial_id
