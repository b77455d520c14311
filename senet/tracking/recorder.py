"""The MLflow run of one training, written by run id.

One ``Recorder`` per run. It talks to the store through ``MlflowClient`` by run id, never
through MLflow's fluent API (which holds one active run per process), so the K runs of a
packed training are K recorders in one process, and a lone training is one.

Once the run is open, a failing store is a ``TrackingLost``: one line that says what was
kept and how to continue, instead of MLflow's chained tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from senet.errors import SenetError, caused_by, first_sentence
from senet.tracking.store import (
    IDENTITY_TAGS,
    absolute_tracking_uri,
    check_tracking,
    find_runs,
    get_or_create_experiment,
    open_client,
    resolve_uri,
)
from senet.urls import redact, with_driver


class TrackingLost(SenetError):
    """The tracking store failed while a run was open. The run is left as it is (its
    store cannot be told); ``--resume`` continues it from the checkpoint."""


def find_unfinished_run(client: Any, experiment_id: str, tags: dict[str, str]) -> str | None:
    """The run of the same grid identity (grid, point, seed) that did not finish, if any."""
    identity = {k: tags[k] for k in IDENTITY_TAGS}
    for run in find_runs(client, [experiment_id], identity, max_results=50):
        if run.info.status != "FINISHED":
            return run.info.run_id
    return None


class Recorder:
    """Starts or continues one MLflow run, logs to it, and closes it."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        self.uri = with_driver(absolute_tracking_uri(resolve_uri(uri)))
        # Seconds, not minutes of retries, when the store is down; before any real work.
        check_tracking(self.uri)
        self.experiment = experiment
        self.run_id: str | None = None
        self._client: Any = None
        self._monitor: Any = None

    @contextmanager
    def _store(self, what: str) -> Iterator[None]:
        """Any backend failure as one line: before the run is open, that the store cannot
        be used; once it is, a TrackingLost that says how to continue."""
        try:
            yield
        except SenetError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure gets one line
            if self.run_id is None:
                raise SenetError(
                    f"MLflow tracking store {redact(self.uri)} is unreachable or unusable: "
                    f"{first_sentence(exc)}") from None
            raise TrackingLost(
                f"MLflow tracking store {redact(self.uri)} failed while {what} "
                f"(run {self.run_id}): {first_sentence(exc)}; the checkpoint of the last "
                "finished epoch is kept and the run left open: run the same command with "
                "--resume once the store answers again, and it continues the same run"
            ) from None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = open_client(self.uri)
        return self._client

    def start(self, *, run_id: str | None, tags: dict[str, str], parent_run_id: str | None,
              run_name: str | None, system_metrics: bool = False) -> str:
        """Continue ``run_id``, or the unfinished run carrying the same grid identity tags,
        or start a new one. Returns the run id."""
        import logging

        from mlflow.tracking.context.registry import resolve_tags

        logging.getLogger("mlflow.store").setLevel(logging.WARNING)
        self.run_id = None
        with self._store("opening the run"):
            client = self.client
            exp_id = get_or_create_experiment(client, self.experiment)
            if run_id is None and all(k in tags for k in IDENTITY_TAGS):
                run_id = find_unfinished_run(client, exp_id, tags)
            if run_id is not None:
                client.update_run(run_id, status="RUNNING")
            else:
                extra = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
                run_id = client.create_run(exp_id, run_name=run_name,
                                           tags=resolve_tags({**tags, **extra})).info.run_id
        self.run_id = run_id
        if system_metrics:
            self._start_monitor()
        return run_id

    def _start_monitor(self) -> None:
        """CPU, memory and GPU use beside the run's metrics (MLflow's monitor, by run id)."""
        import logging

        # The monitor warns on its own when the store stops answering ("Failed to get mlflow
        # run: ..."), a long line before the training's own one-line error says the same.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(self.run_id, resume_logging=True,
                                                 tracking_uri=self.uri)
            self._monitor.start()
        except Exception:  # noqa: BLE001 - a missing monitor costs a chart, not the run
            self._monitor = None

    def is_finished(self, run_id: str | None) -> bool:
        """Whether ``run_id`` exists and was closed FINISHED (before a run is open)."""
        if run_id is None:
            return False
        try:
            return self.client.get_run(run_id).info.status == "FINISHED"
        except SenetError:
            raise
        except Exception:  # noqa: BLE001 - unknown run: not finished; start() will say more
            return False

    def tags(self) -> dict[str, str]:
        with self._store("reading the run's tags"):
            return dict(self.client.get_run(self.run_id).data.tags)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        with self._store("logging params"):
            existing = self.client.get_run(self.run_id).data.params
            # Params are immutable in MLflow: a resumed run logs only what is new.
            fresh = [Param(k, str(v)) for k, v in params.items() if k not in existing]
            if fresh:
                self.client.log_batch(self.run_id, params=fresh)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._store(f"logging metrics{'' if step is None else f' of epoch {step}'}"):
            self.client.log_batch(self.run_id, metrics=[
                Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def log_metrics_once(self, metrics: dict[str, float]) -> int:
        """Log the metrics the run does not hold yet (final results: a finish that was
        interrupted and resumed logs each once). Returns how many were logged."""
        with self._store("reading the final metrics"):
            existing = self.client.get_run(self.run_id).data.metrics
        fresh = {k: v for k, v in metrics.items() if k not in existing}
        if fresh:
            self.log_metrics(fresh)
        return len(fresh)

    def log_missing_epochs(self, history: list[dict[str, Any]], key: str) -> int:
        """Log the epochs of ``history`` whose ``key`` metric the run lacks: a worker killed
        between saving a checkpoint and logging that epoch resumes without it otherwise.
        Returns how many epochs were logged."""
        with self._store("reading the logged epochs"):
            logged = {m.step for m in self.client.get_metric_history(self.run_id, key)}
        missing = [h for h in history if h["epoch"] not in logged]
        for h in missing:
            self.log_metrics({k: v for k, v in h.items() if k != "epoch"}, step=h["epoch"])
        return len(missing)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        with self._store("setting tags"):
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def delete_tags(self, keys: list[str]) -> None:
        """Drop tags a resumed run must not carry on (a stale failure reason)."""
        with self._store("clearing stale tags"):
            present = self.client.get_run(self.run_id).data.tags
            for key in keys:
                if key in present:
                    self.client.delete_tag(self.run_id, key)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with self._store(f"storing {Path(path).name}"):
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None:
        with self._store("logging the dataset"):
            self._log_dataset(name, source, digest, context)

    def _log_dataset(self, name: str, source: str, digest: str, context: str) -> None:
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from sqlalchemy.exc import IntegrityError

        if source.startswith(("http://", "https://")):
            from mlflow.data.http_dataset_source import HTTPDatasetSource

            src: Any = HTTPDatasetSource(source)
        elif os.path.exists(source):
            from mlflow.data.dataset_source_registry import resolve_dataset_source

            # MLflow registers its local-file source class at run time; resolve by path.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "can be interpreted in multiple ways"
                src = resolve_dataset_source(os.path.abspath(source))
        else:
            from mlflow.data.code_dataset_source import CodeDatasetSource

            src = CodeDatasetSource(tags={"generator": source})
        dataset = MetaDataset(src, name=name, digest=digest[:36])
        entry = DatasetInput(dataset._to_mlflow_entity(),
                             tags=[InputTag("mlflow.data.context", context)])
        try:
            self.client.log_inputs(self.run_id, datasets=[entry])
        except Exception as exc:
            # MLflow's SQL store checks for the experiment's dataset row and inserts it in
            # two steps, so two workers starting on the same data at once can both try the
            # insert; the loser gets an IntegrityError (wrapped in an MlflowException). By
            # then the row exists and a second call just links it to this run.
            if not caused_by(exc, IntegrityError):
                raise
            self.client.log_inputs(self.run_id, datasets=[entry])

    def finish(self, status: str = "FINISHED") -> None:
        self._stop_monitor()
        if self.run_id is None:
            return
        with self._store(f"closing the run {status}"):
            self.client.set_terminated(self.run_id, status=status)

    def close_quietly(self, status: str, tags: dict[str, str]) -> None:
        """Tag and close the run while an error is already on its way up: a failure here
        must not bury that error (it is the one the user needs)."""
        self._stop_monitor()
        with contextlib.suppress(SenetError):
            if tags:
                self.set_tags(tags)
            self.finish(status)

    def _stop_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            with contextlib.suppress(Exception):
                monitor.finish()
