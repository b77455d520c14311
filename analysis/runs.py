"""Fetch the training runs of a grid from MLflow into pandas.

One row per seed run (runs tagged ``senet.seed``; parent runs that only group them are
left out). A grid's runs are found by training key (tag ``senet.key``, issue 10): a
training shared by several grids is one run, and every grid's table reads it under its
own point and label. A keyed run whose key the grid no longer has
(a point removed, or epochs changed) is left out, so an edited grid lists each label
once. Runs logged before keys existed are found by their ``senet.grid`` /
``senet.point`` / ``senet.seed`` tags, as before.

Columns: run_id, experiment_id, status, start_time, end_time, grid, point,
seed, label, fail_reason, then ``param.<name>`` and ``metric.<name>`` for the run's
params and (last logged) metrics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from senet.errors import SenetError, first_sentence
from senet.tracking.store import A_GRID as TAG_GRID
from senet.tracking.store import T_KEY as TAG_KEY
from senet.tracking.store import T_LABEL as TAG_LABEL
from senet.tracking.store import T_POINT as TAG_POINT
from senet.tracking.store import T_SEED as TAG_SEED
from senet.tracking.store import TAG_FAIL_REASON as TAG_FAIL
from senet.tracking.store import (
    absolute_tracking_uri,
    check_tracking,
    prepare_env,
    resolve_uri,
    tag_filter,
)
from senet.urls import password_hint, redact, with_driver

if TYPE_CHECKING:
    from mlflow import MlflowClient

BASE_COLUMNS = [
    "run_id",
    "experiment_id",
    "status",
    "start_time",
    "end_time",
    "grid",
    "point",
    "seed",
    "label",
    "fail_reason",
]


def open_client(tracking_uri: str | None = None) -> MlflowClient:
    """A client for ``tracking_uri``; None: $MLFLOW_TRACKING_URI, else the project default."""
    from mlflow import MlflowClient

    # absolute: MLflow caches one store per URI string, so a relative SQLite URI would keep
    # reading the first folder's file after a chdir; a postgresql:// URI gets the driver
    # that is installed, as training's does (SQLAlchemy 2.1 would pick psycopg 3)
    uri = with_driver(absolute_tracking_uri(resolve_uri(tracking_uri)))
    if uri.startswith(("http://", "https://")):
        check_tracking(uri)  # seconds and one line, not MLflow's retries and traceback
    prepare_env(uri)
    try:
        return MlflowClient(tracking_uri=uri)  # a SQLite store is opened (and read) here
    except Exception as exc:  # noqa: BLE001 - any store failure becomes one line
        raise SenetError(f"MLflow tracking store {redact(uri)} cannot be opened "
                         f"({first_sentence(exc)}); give --tracking-uri an MLflow store: "
                         "sqlite:///PATH/mlflow.db or http://HOST:PORT") from None


def _experiment_ids(client: MlflowClient) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return ids


def _search(client: MlflowClient, filter_string: str) -> list:
    runs: list = []
    try:
        ids = _experiment_ids(client)
    except Exception as exc:  # noqa: BLE001 - any backend failure becomes one line
        raise SenetError(
            f"MLflow tracking store {redact(client.tracking_uri)} cannot be read "
            f"({password_hint(client.tracking_uri, first_sentence(exc))}); give "
            "--tracking-uri an MLflow store: sqlite:///PATH/mlflow.db or http://HOST:PORT"
        ) from None
    # The SQL store caps how many experiments one query may name.
    for i in range(0, len(ids), 100):
        token = None
        while True:
            page = client.search_runs(
                ids[i : i + 100], filter_string=filter_string, max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
    return runs


def grid_slots(grid: str) -> dict[str, tuple[str, int, str]] | None:
    """training key -> (point id, seed, label) for the grid file ``grid`` names as it now
    stands, or None when no such file can be found (the tags then decide)."""
    from senet.queue.tickets import grid_keys
    from senet.settings.grid import load_grid

    try:
        spec = load_grid(grid)
        # An adaptive grid's points may have any seed below max (senet.queue.adaptive).
        keys = grid_keys(spec, spec.seeds if spec.adaptive is None else range(spec.adaptive.max))
    except SenetError:
        return None
    labels = {p.id: p.label for p in spec.points}
    return {key: (point, seed, labels[point]) for (point, seed), key in keys.items()}


def fetch_runs(client: MlflowClient, grid: str | None = None,
               slots: dict[str, tuple[str, int, str]] | None = None) -> pd.DataFrame:
    """Every seed run of ``grid`` (all grids when None), in every active experiment.
    ``slots`` (training key -> point, seed, label) defaults to the grid file's own."""
    if grid is not None and slots is None:
        slots = grid_slots(grid)
    by_key = grid is not None and slots is not None
    # By key, a grid's runs may carry another grid's tag: read them all, match here.
    where = tag_filter({TAG_GRID: grid}) if grid is not None and not by_key else ""
    rows = []
    seen: set[str] = set()
    for run in _search(client, where):
        tags = run.data.tags
        if TAG_GRID not in tags or TAG_SEED not in tags or run.info.run_id in seen:
            continue
        key = tags.get(TAG_KEY)
        if by_key and key in slots:
            point, seed, label = slots[key]
        elif grid is not None and (tags[TAG_GRID] != grid or (by_key and key)):
            continue  # another grid's; or tag_filter over-matched a name with both quotes
        else:
            try:
                seed = int(tags[TAG_SEED])
            except ValueError:
                continue
            point, label = tags.get(TAG_POINT, ""), tags.get(TAG_LABEL, "")
        seen.add(run.info.run_id)
        row = {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "grid": grid if grid is not None else tags[TAG_GRID],
            "point": point,
            "seed": seed,
            "label": label,
            "fail_reason": tags.get(TAG_FAIL, ""),
        }
        row.update({f"param.{k}": v for k, v in run.data.params.items()})
        row.update({f"metric.{k}": v for k, v in run.data.metrics.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=BASE_COLUMNS)
    return frame.sort_values(["point", "seed", "start_time"], kind="stable").reset_index(drop=True)


def recorded_grid_file(client: MlflowClient, grid: str) -> str | None:
    """The grid file ``grid`` was queued from, as tagged on its parent run, if it still
    exists."""
    from senet.tracking.store import A_GRID_FILE, TAG_ROLE

    for run in _search(client, tag_filter({TAG_GRID: grid, TAG_ROLE: "grid"})):
        path = run.data.tags.get(A_GRID_FILE)
        if run.data.tags.get(TAG_GRID) == grid and path and Path(path).is_file():
            return path
    return None


def grid_names(client: MlflowClient) -> list[str]:
    """Names of all grids that have at least one seed run."""
    runs = fetch_runs(client)
    return sorted(runs["grid"].unique()) if not runs.empty else []


def metric_histories(client: MlflowClient, run_ids: list[str], keys: list[str]) -> pd.DataFrame:
    """Per-step values of ``keys`` for ``run_ids``: columns run_id, key, step, value."""
    rows = [
        (run_id, key, m.step, m.value)
        for run_id in run_ids
        for key in keys
        for m in client.get_metric_history(run_id, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def download_artifact(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path | None:
    """The artifact at ``path`` of ``run_id`` as a local file, or None if the run has none."""
    folder, _, name = path.rpartition("/")
    listed = {Path(f.path).name for f in client.list_artifacts(run_id, folder or None)}
    if name not in listed:
        return None
    dst.mkdir(parents=True, exist_ok=True)
    # MLflow draws a progress bar per download; for one small file it is only noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return Path(client.download_artifacts(run_id, path, str(dst)))
