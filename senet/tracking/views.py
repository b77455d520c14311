"""The saved view of a grid's experiment: the MLflow runs table opened on the numbers.

MLflow's runs table shows no metric column until one is picked among dozens; since MLflow
3.15 a named view of columns, sort, filter and grouping can be stored with the experiment
and opened by a link. Its format, read from MLflow's UI code (savedViewEnvelope.ts and
useSharedExperimentViewState.ts): an experiment tag ``mlflow.sharedViewState.<id>`` whose
value is the JSON ``{"name", "createdAt", "updatedAt", "state"}``, ``state`` being the
runs page's search facets and UI state as a JSON string (the UI also reads it
deflate-compressed; plain JSON is the form it documents as forward-compatible), at most
5,000 characters; the link is ``#/experiments/<id>/runs?viewStateShareKey=<id>``.
Names of runs table columns are ``metrics.`key```, ``tags.`key``` (its canonical sort keys).
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from senet.urls import redact

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "senet-results"  # one per experiment: experiment tags are per experiment
VIEW_NAME = "senet: errors, params, GMACs by variant"
MAX_TAG_VALUE = 5000  # MLflow's limit on an experiment tag's value
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default

# The final and best validation errors, then the costs. Top-5 only where it says something.
TOP1 = ("final_val_top1_err", "best_val_top1_err")
TOP5 = ("final_val_top5_err", "best_val_top5_err")
COSTS = ("params", "gmacs")


def shows_top5(num_classes: int | None) -> bool:
    """Top-5 error with 10 classes or fewer says next to nothing (the tables' rule too)."""
    return num_classes is None or num_classes > 10


def view_state(top5: bool) -> dict[str, Any]:
    """The runs page as the view opens it: the seed runs (not the grid's parent run), best
    final top-1 first, the error and cost columns and the label, grouped by label (MLflow
    shows each group's mean over its seeds)."""
    metrics = [*TOP1, *(TOP5 if top5 else ()), *COSTS]
    return {
        "searchFilter": "tags.`senet.seed` IS NOT NULL",
        "orderByKey": "metrics.`final_val_top1_err`",
        "orderByAsc": True,
        "selectedColumns": [*(f"metrics.`{m}`" for m in metrics), "tags.`senet.label`"],
        "groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "tag", "groupByData": "senet.label"}]},
    }


def view_tag(top5: bool, now_ms: int | None = None) -> tuple[str, str]:
    """(tag key, tag value) of the saved view."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    value = json.dumps({"name": VIEW_NAME, "createdAt": stamp, "updatedAt": stamp,
                        "state": json.dumps(view_state(top5))})
    return VIEW_TAG_PREFIX + VIEW_ID, value


def ensure_results_view(client: Any, experiment_id: str, top5: bool) -> bool:
    """Store the view on the experiment unless an equal one is there. True if written."""
    key, value = view_tag(top5)
    current = client.get_experiment(experiment_id).tags.get(key)
    if current is not None:
        try:
            if json.loads(current).get("state") == json.loads(value)["state"]:
                return False
        except (ValueError, AttributeError):
            pass  # not a view senet can read: write its own over it
    client.set_experiment_tag(experiment_id, key, value)
    return True


def view_url(server: str, experiment_id: str) -> str:
    """The link that opens the saved view: the runs table of the model-training view
    (MLflow 3.17 picks its GenAI or training view from ?workflowType, else from the
    browser's last choice)."""
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={VIEW_ID}&compareRunsMode=TABLE&workflowType=machine_learning")


def view_lines(tracking_uri: str, experiment_id: str) -> list[str]:
    """What to print under a grid: the link on a tracking server; for a local store, the
    `mlflow ui` command to start first, then the link it will serve."""
    if tracking_uri.startswith(("http://", "https://")):
        return [f"  results view: {view_url(tracking_uri, experiment_id)}"]
    start = f"mlflow ui --backend-store-uri {shlex.quote(redact(tracking_uri))}"
    return [f"  results view: run `{start}`, then open",
            f"    {view_url(UI_ADDRESS, experiment_id)}"]
