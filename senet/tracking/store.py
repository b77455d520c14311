"""Everything MLflow: tracking URIs, the names of senet's tags and attrs, filter strings,
experiments, the grid's parent run, and the single run of one training.

``mlflow`` is imported lazily, inside functions, because its import costs 1-2 s.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

from senet.errors import SenetError, first_sentence, one_line
from senet.tracking.uri import check_uri_form
from senet.urls import (
    backend,
    connect_timeout,
    password_hint,
    redact,
    sqlite_path,
    with_driver,
    without_password,
)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# ---------------------------------------------------------------------------
# Names. Study (grid) attrs of the queue; several double as MLflow tags.
A_GRID = "senet.grid"
A_TITLE = "senet.title"
A_PAPER_TABLE = "senet.paper_table"
A_PAPER_REF = "senet.paper_ref"
A_GRID_FILE = "senet.grid_file"
A_POINTS = "senet.points"
A_EXPERIMENT = "senet.mlflow_experiment"
A_EXPERIMENT_ID = "senet.mlflow_experiment_id"
A_PARENT_RUN = "senet.parent_run_id"
A_TRACKING_URI = "senet.tracking_uri"
A_SLOTS = "senet.slots"  # [[point, seed, key], ...]: the grid as it now stands

# Trial (ticket) attrs of the queue; point, seed and label are also run tags.
T_POINT = "senet.point"
T_SEED = "senet.seed"
T_LABEL = "senet.label"
T_SETTINGS = "senet.settings"
T_HEARTBEAT = "senet.heartbeat"
T_WORKER = "senet.worker"
T_REASON = "senet.reason"
T_RUN_ID = "senet.mlflow_run_id"
T_REPLACES = "senet.replaces"
T_SECONDS = "senet.seconds"
T_KEY = "senet.key"  # senet.settings.identity.training_key: also the MLflow run tag
T_GRACE = "senet.grace_s"  # the claiming worker's grace: reapers honour it

# MLflow run tags.
TAG_ROLE = "senet.role"  # "grid" on a grid's parent run
TAG_VERSION = "senet.version"
TAG_GIT_COMMIT = "senet.git_commit"
TAG_DEVICE = "senet.device"
TAG_FAIL_REASON = "senet.fail_reason"
TAG_STOP_REASON = "senet.stop_reason"
IDENTITY_TAGS = (A_GRID, T_POINT, T_SEED)  # one seed run of one grid point
# MLflow 3's UI opens an experiment without this tag in its GenAI "Traces" view.
TRAINING_EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


# ---------------------------------------------------------------------------
# URIs


def prepare_env(uri: str) -> None:
    """Fail fast instead of retrying for minutes when a tracking server is down."""
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use: ``uri`` (from --tracking-uri), else $MLFLOW_TRACKING_URI,
    else sqlite:///mlflow.db; refused in one line when it is not one senet can use."""
    if uri:
        check_uri_form(uri, f"--tracking-uri {redact(uri)}")
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        check_uri_form(env, f"MLFLOW_TRACKING_URI={redact(env)}")
        return env
    return DEFAULT_TRACKING_URI


def password_from_env(uri: str | None) -> str | None:
    """A stored tracking URI (kept without its password) with the password that
    $MLFLOW_TRACKING_URI gives, when that names the same store: how workers get a password
    that `senet queue` was given but did not store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri or not env:
        return uri
    full = with_driver(absolute_tracking_uri(env))
    return full if without_password(full) == uri else uri


def absolute_tracking_uri(uri: str) -> str:
    """sqlite:///mlflow.db -> sqlite:////abs/mlflow.db, so workers started from another
    folder write to the same database as `senet queue` did."""
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    from sqlalchemy.engine import make_url

    return make_url(uri).set(database=str(path.resolve())).render_as_string(hide_password=False)


def check_tracking(uri: str) -> None:
    """Fail in seconds with one line when the tracking backend cannot be reached,
    instead of MLflow's minutes of retries."""
    check_uri_form(uri, f"tracking URI {redact(uri)}")
    prepare_env(uri)
    if uri.startswith(("http://", "https://")):
        import requests

        timeout = connect_timeout()
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout)
            return
        except requests.Timeout:  # first: a connect timeout is also a ConnectionError
            why = f"no answer within {timeout} s"
        except requests.ConnectionError:
            why = "nothing answers there"
        except requests.RequestException as exc:
            why = one_line(exc)
        raise SenetError(f"cannot reach MLflow tracking server {redact(uri)}: {why}; start "
                         "it (mlflow server --host HOST --port PORT) or give another "
                         "--tracking-uri")
    elif backend(uri) in ("postgresql", "postgres", "mysql", "mssql"):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(
                with_driver(uri), connect_args={"connect_timeout": connect_timeout()}
            )
            with engine.connect():
                pass
            engine.dispose()
        except Exception as exc:
            raise SenetError(
                f"cannot reach MLflow tracking database {redact(uri)}: "
                f"{password_hint(uri, one_line(exc))}"
            ) from None
    elif (path := sqlite_path(uri)) is not None:
        try:
            folder_exists = path.parent.is_dir()
        except OSError as exc:
            raise SenetError(f"tracking URI {uri}: cannot look into {path.parent}: "
                             f"{exc.strerror or exc}") from None
        if not folder_exists:
            raise SenetError(f"tracking URI {uri}: folder {path.parent} does not exist")
        ensure_store(uri)


# SQLite stores this process has already seen created and migrated.
_READY_STORES: set[str] = set()


def ensure_store(uri: str) -> None:
    """Create and migrate a SQLite tracking store once, under a file lock, before any use.

    MLflow creates a new store's tables and runs its Alembic migrations the first time a
    client opens it; two processes doing that at once corrupt it for good ("duplicate column
    name", "table _alembic_tmp_tags already exists"). The first process to take
    ``<db>.lock`` migrates; the others wait, then find the schema current. Other backends
    are created by their administrators (or a server) and need no lock here."""
    import fcntl

    path = sqlite_path(uri)
    if path is None:
        return
    path = path.resolve()  # a relative file is another store after a chdir
    if str(path) in _READY_STORES:
        return
    if path.exists() and not os.access(path, os.W_OK):
        raise SenetError(f"tracking store {path} is read-only (attempt to write a readonly "
                         "database): make it writable or give another --tracking-uri")
    if not os.access(path.parent, os.W_OK):
        what = "its journal" if path.exists() else "the database"
        raise SenetError(f"tracking URI {uri}: cannot create {what} in {path.parent}: the "
                         "folder is not writable; choose a writable folder")
    lock_path = path.with_name(path.name + ".lock")
    try:
        lock = open(lock_path, "a")  # noqa: SIM115 - held across the migration below
    except OSError as exc:
        raise SenetError(f"tracking URI {uri}: cannot create the lock file {lock_path}: "
                         f"{exc.strerror or exc}; choose a writable folder") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            import logging

            from mlflow import MlflowClient

            # "Creating initial MLflow database tables..." is MLflow's business, not the user's.
            for name in ("mlflow.store.db.utils", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any store failure gets one line
            raise SenetError(f"tracking store {redact(uri)} cannot be opened as an MLflow "
                             f"store ({first_sentence(exc)}); give another --tracking-uri, "
                             "or move the file aside for senet to make a new one") from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(str(path))


def open_client(uri: str) -> Any:
    """An MlflowClient for ``uri``, its store created and migrated first (see ensure_store).
    Every senet module that reads or writes MLflow opens its client here."""
    import logging

    from mlflow import MlflowClient

    # MLflow caches one store per URI string for the whole process: a relative SQLite URI
    # would keep reading the first folder's file after a chdir.
    uri = absolute_tracking_uri(uri)
    prepare_env(uri)
    # Its SQL store logs every database error with three chained tracebacks before raising
    # it; senet reports the error itself, in one line (TrackingLost, SenetError).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    ensure_store(uri)
    return MlflowClient(tracking_uri=uri)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------
# Filters


def _quoted(value: str) -> tuple[str, str]:
    """(comparator, literal) for an exact tag match. MLflow strips the quotes of a string
    literal but unescapes nothing, so a value holding ' goes in double quotes. One holding
    both kinds cannot be written exactly: LIKE with `_` for each quote over-matches, and
    ``find_runs`` keeps only the exact matches."""
    if "'" not in value:
        return "=", f"'{value}'"
    if '"' not in value:
        return "=", f'"{value}"'
    pattern = "".join("_" if c in "'\"%_" else c for c in value)
    return "LIKE", f"'{pattern}'"


def tag_filter(tags: dict[str, Any], kind: str = "tags") -> str:
    """An MLflow filter string matching runs that carry every tag (or, with
    ``kind="params"``, every param) in ``tags``."""
    parts = []
    for key, value in tags.items():
        op, literal = _quoted(str(value))
        parts.append(f"{kind}.`{key}` {op} {literal}")
    return " and ".join(parts)


def has_tags(run: Any, tags: dict[str, Any]) -> bool:
    return all(run.data.tags.get(k) == str(v) for k, v in tags.items())


def find_runs(client: Any, experiment_ids: list[str], tags: dict[str, Any],
              max_results: int = 1000) -> list[Any]:
    """Runs of the experiments that carry exactly these tags."""
    runs = client.search_runs(experiment_ids, tag_filter(tags), max_results=max_results)
    return [run for run in runs if has_tags(run, tags)]


# ---------------------------------------------------------------------------
# Experiments and the grid's parent run


def get_or_create_experiment(client: Any, name: str, tags: dict[str, str] | None = None) -> str:
    """Experiment id by name: restored if it was deleted, created if missing (a concurrent
    creator is tolerated)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, tags={**TRAINING_EXPERIMENT_TAGS, **(tags or {})})
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class GridAttrs(Protocol):
    """What ensure_grid_tracking needs of a grid's queue (senet.queue.tickets.GridQueue)."""

    name: str

    def attrs(self) -> dict[str, Any]: ...

    def set_attr(self, key: str, value: Any) -> None: ...


def ensure_grid_tracking(queue: GridAttrs, tracking_uri: str,
                         grid_file: str | None = None) -> dict[str, str]:
    """Create the grid's MLflow experiment and parent run once, and record them in the
    study so every worker nests its runs under the same parent without racing to create
    it. Re-running finds the existing ones (by study attrs, then by tags). ``grid_file``
    is tagged on the parent run: `senet tables NAME` finds a grid file that lives outside
    experiments/ through it."""
    client = open_client(tracking_uri)
    attrs = queue.attrs()
    recorded_uri = without_password(tracking_uri)  # never a password in the queue
    if attrs.get(A_TRACKING_URI) not in (None, recorded_uri):
        # Queued before against another tracking store: its parent run is not in this one.
        attrs = {k: v for k, v in attrs.items() if k not in (A_PARENT_RUN, A_EXPERIMENT_ID)}
    experiment_name = attrs.get(A_EXPERIMENT) or queue.name
    parent_tags = {A_GRID: queue.name, TAG_ROLE: "grid"}
    try:
        experiment_id = get_or_create_experiment(client, experiment_name, {A_GRID: queue.name})
        parent = attrs.get(A_PARENT_RUN)
        if parent is None:
            found = find_runs(client, [experiment_id], parent_tags, max_results=1)
            if found:
                parent = found[0].info.run_id
            else:
                run = client.create_run(experiment_id, tags=parent_tags, run_name=queue.name)
                parent = run.info.run_id
        if grid_file and client.get_run(parent).data.tags.get(A_GRID_FILE) != grid_file:
            client.set_tag(parent, A_GRID_FILE, grid_file)
    except SenetError:
        raise
    except Exception as exc:
        raise SenetError(f"MLflow tracking {redact(tracking_uri)}: {one_line(exc)}") from None
    wanted = {
        A_EXPERIMENT: experiment_name,
        A_EXPERIMENT_ID: experiment_id,
        A_PARENT_RUN: parent,
        A_TRACKING_URI: recorded_uri,
    }
    for key, value in wanted.items():
        if attrs.get(key) != value:
            queue.set_attr(key, value)
    return wanted


def set_parent_status(tracking_uri: str, run_id: str, status: str) -> None:
    """RUNNING while the grid has work left, FINISHED once drained, so no parent run
    is left RUNNING after a grid ends."""
    client = open_client(tracking_uri)
    if client.get_run(run_id).info.status == status:
        return
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=status)


def close_orphan_runs(tracking_uri: str, experiment_id: str, tags: dict[str, str]) -> int:
    """Mark FAILED the RUNNING runs carrying ``tags`` (a crash outside the training loop
    can leave one behind). Returns how many were closed."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run("FAILED")
    client = open_client(tracking_uri)
    closed = 0
    for run in find_runs(client, [experiment_id], tags):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="FAILED")
            closed += 1
    return closed
