"""A training that starts over at epoch 1 never continues an MLflow run that already
logged epochs: its steps would be logged twice (1, 2, 1, 2, ...).

That happens when a checkpoint is lost (deleted after "cannot read checkpoint", or its
folder removed) while its run is still on record: the run id in ``run.json``, or the
unfinished run a grid worker finds by the point's identity tags. Such a run is closed
FAILED, tagged with why, and moved to MLflow's trash (restorable, and out of every table);
the training then opens a new run. A run with no epochs logged (killed before its first
checkpoint) is continued as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from senet.errors import SenetError, one_line
from senet.tracking.store import (
    IDENTITY_TAGS,
    TAG_FAIL_REASON,
    find_runs,
    open_client,
)
from senet.urls import redact

EPOCH_METRIC = "val_top1_err"  # logged once per finished epoch


def run_to_continue(tracker: Any, run_id: str | None, tags: dict[str, str],
                    say: Callable[[str], None]) -> str | None:
    """``run_id`` if a training starting at epoch 1 may continue it (it logged no epoch),
    else None. Any run it may not continue (that one, or for a grid point the unfinished
    runs of the same identity) is retired first."""
    try:
        client = open_client(tracker.uri)
        candidates = [run_id] if run_id else _unfinished(client, tracker.experiment, tags)
        for candidate in candidates:
            try:
                history = client.get_metric_history(candidate, EPOCH_METRIC)
            except Exception:  # noqa: BLE001 - an unknown run: Recorder.start says more
                return run_id
            epochs = len({m.step for m in history})
            if not epochs:
                continue
            _retire(client, candidate, epochs)
            say(f"MLflow run {candidate} already logged {epochs} epoch(s) but their "
                "checkpoint is gone: starting over at epoch 1 in a new run (the old one is "
                "in MLflow's trash)")
            if candidate == run_id:
                return None
    except SenetError:
        raise
    except Exception as exc:  # noqa: BLE001 - any backend failure gets one line
        raise SenetError(f"MLflow tracking store {redact(tracker.uri)} failed while looking "
                         f"for the run to continue: {one_line(exc, limit=200)}") from None
    return run_id


def _unfinished(client: Any, experiment: str, tags: dict[str, str]) -> list[str]:
    if not all(k in tags for k in IDENTITY_TAGS):
        return []
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    identity = {k: tags[k] for k in IDENTITY_TAGS}
    return [r.info.run_id for r in find_runs(client, [exp.experiment_id], identity, 50)
            if r.info.status != "FINISHED"]


def _retire(client: Any, run_id: str, epochs: int) -> None:
    client.set_tag(run_id, TAG_FAIL_REASON,
                   f"its checkpoint was lost after {epochs} epoch(s); the training started "
                   "over at epoch 1 in a new run")
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="FAILED")
    client.delete_run(run_id)
