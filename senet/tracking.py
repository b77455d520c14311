"""MLflow bookkeeping for one training run. ``mlflow`` is imported here only, lazily,
because its import costs 1-2 s."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

from senet.errors import SenetError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
IDENTITY_TAGS = ("senet.grid", "senet.point", "senet.seed")
# MLflow 3's UI opens an experiment without this tag in its GenAI "Traces" view.
TRAINING_EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def prepare_env(uri: str) -> None:
    """Fail fast instead of retrying for minutes when a tracking server is down."""
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def resolve_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def get_or_create_experiment(client: Any, name: str) -> str:
    """Experiment id by name, created if needed (tolerates a concurrent creator)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, tags=TRAINING_EXPERIMENT_TAGS)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class RunTracker:
    """Starts, continues and closes the single MLflow run of one training."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        from senet.queue import check_tracking, with_driver

        self.uri = with_driver(resolve_uri(uri))
        # Seconds, not minutes of retries, when the store is down; before any real work.
        check_tracking(self.uri)
        self.experiment = experiment
        self.run_id: str | None = None

    def start(
        self, *, run_id: str | None, tags: dict[str, str], parent_run_id: str | None,
        run_name: str | None, system_metrics: bool = True,
    ) -> str:
        """Continue ``run_id``, or the unfinished run carrying the same grid identity tags,
        or start a new one. Returns the run id."""
        import logging

        import mlflow
        from mlflow.tracking import MlflowClient

        # The monitor's INFO chatter would drown the epoch lines.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        logging.getLogger("mlflow.store").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(self.uri)
        try:
            client = MlflowClient(self.uri)
            exp_id = get_or_create_experiment(client, self.experiment)
            if run_id is None and all(k in tags for k in IDENTITY_TAGS):
                run_id = self._find_unfinished(client, exp_id, tags)
            if mlflow.active_run() is not None:
                mlflow.end_run()
            if run_id is not None:
                run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
            else:
                run = mlflow.start_run(
                    experiment_id=exp_id, run_name=run_name, tags=tags,
                    parent_run_id=parent_run_id, log_system_metrics=system_metrics,
                )
        except SenetError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure gets one line
            raise SenetError(
                f"MLflow tracking store {self.uri} is unreachable or unusable: "
                f"{str(exc).splitlines()[0][:200]}"
            ) from None
        self.run_id = run.info.run_id
        return self.run_id

    @staticmethod
    def _find_unfinished(client: Any, exp_id: str, tags: dict[str, str]) -> str | None:
        query = " and ".join(f"tags.`{k}` = '{tags[k]}'" for k in IDENTITY_TAGS)
        runs = client.search_runs([exp_id], filter_string=query, max_results=50)
        for run in runs:
            if run.info.status != "FINISHED":
                return run.info.run_id
        return None

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        existing = mlflow.get_run(self.run_id).data.params
        # Params are immutable in MLflow: a resumed run logs only what is new.
        fresh = {k: str(v) for k, v in params.items() if k not in existing}
        if fresh:
            mlflow.log_params(fresh)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics(metrics, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None:
        import mlflow
        from mlflow.data.meta_dataset import MetaDataset

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
        try:
            mlflow.log_input(dataset, context=context)
        except Exception as exc:  # noqa: BLE001 - only the insert race is retried
            # MLflow's store checks for the experiment's dataset row and inserts it in two
            # steps, so two workers starting on the same data at once can both try the
            # insert; the loser gets a unique-constraint error. By then the row exists and
            # a second call just links it to this run.
            if "unique" not in str(exc).lower():
                raise
            mlflow.log_input(dataset, context=context)

    def finish(self, status: str = "FINISHED") -> None:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)
