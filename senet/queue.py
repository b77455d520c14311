"""The grid queue: one Optuna study per grid, one trial ("ticket") per point x seed.

Optuna is used as a shared, durable table of tickets, not as a sampler:

* tickets are created WAITING with the point's settings in user attrs, never
  through `study.ask()` or GridSampler (which hand one point to several workers);
* a worker claims a ticket by the atomic WAITING -> RUNNING transition of
  `storage.set_trial_state_values`, which returns False to every loser (journal:
  the first RUNNING record in the log wins; RDB: the row is read FOR UPDATE);
* a claimed ticket carries a heartbeat user attr; any worker or `senet status`
  moves a RUNNING ticket with a stale heartbeat to FAIL ("worker lost") and, if it
  won that transition, queues a replacement ticket for the same point and seed;
* finished transitions are atomic too (the second one raises
  UpdateFinishedTrialError), so two reapers cannot both requeue one ticket.

A (point, seed) pair is a "slot"; several tickets may exist for a slot over time
(retries, replacements, rare duplicates). The slot is done when any ticket is
COMPLETE. Tickets closed without training (duplicates) end PRUNED, real failures FAIL.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from senet.errors import SenetError

DEFAULT_STORAGE = "senet-queue.journal"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
HEARTBEAT_ENV = "SENET_HEARTBEAT_S"
GRACE_ENV = "SENET_HEARTBEAT_GRACE_S"
CONNECT_TIMEOUT_ENV = "SENET_CONNECT_TIMEOUT_S"

# User attrs of a study (grid) and of a trial (ticket).
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

T_POINT = "senet.point"
T_SEED = "senet.seed"
T_LABEL = "senet.label"
T_SETTINGS = "senet.settings"
T_HEARTBEAT = "senet.heartbeat"
T_WORKER = "senet.worker"
T_REASON = "senet.reason"
T_RUN_ID = "senet.mlflow_run_id"
T_REPLACES = "senet.replaces"


def heartbeat_interval() -> float:
    return _env_seconds(HEARTBEAT_ENV, 10.0)


def grace_period() -> float:
    """How long a heartbeat may be silent before its ticket is taken back. Keep it
    well above the interval: a busy CPU can delay the heartbeat thread by seconds."""
    return _env_seconds(GRACE_ENV, 60.0)


def connect_timeout() -> int:
    return int(_env_seconds(CONNECT_TIMEOUT_ENV, 5.0))


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SenetError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise SenetError(f"{name}={raw!r}: expected a number of seconds > 0")
    return value


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------------------
# Storage


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


def with_driver(url: str) -> str:
    """postgresql://... -> postgresql+psycopg2://... when only psycopg2 is installed:
    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        return f"postgresql+psycopg://{rest}"
    if importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    raise SenetError(
        f"{redact(url)}: no PostgreSQL driver; pip install psycopg2-binary (or psycopg)"
    )


def open_storage(url: str | None = None, *, create: bool = True):
    """A journal file path (default ./senet-queue.journal), sqlite:///..., or postgresql://...
    With create=False a missing journal file is an error instead of a new empty queue."""
    url = url or DEFAULT_STORAGE
    if "://" not in url:
        if not create and not Path(url).is_file():
            raise SenetError(
                f"no queue at {url}: nothing has been queued here yet; run `senet queue GRID` "
                "first (or give --storage)"
            )
        return _journal_storage(url)
    if url.startswith("sqlite:"):
        return _sqlite_storage(url)
    if url.startswith(("postgresql", "postgres:", "mysql")):
        return _server_storage(with_driver(url))
    raise SenetError(
        f"unsupported --storage {redact(url)!r}; use a journal file path, "
        "sqlite:///FILE or postgresql://USER@HOST/DB"
    )


def _journal_storage(path: str):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    file = Path(path)
    if not file.parent.is_dir():
        raise SenetError(f"queue storage {path}: folder {file.parent} does not exist")
    # The lock file sits beside the journal, so every worker on this machine (or on a
    # shared file system with working O_EXCL) serialises its appends through it.
    backend = JournalFileBackend(str(file), lock_obj=JournalFileOpenLock(str(file)))
    return JournalStorage(backend)


def _sqlite_storage(url: str):
    import sqlalchemy
    from optuna.storages import RDBStorage

    storage = _rdb(RDBStorage, url, {"connect_args": {"timeout": 60}})
    # pysqlite opens transactions lazily, so a read followed by an update is not
    # atomic and two workers could both move one ticket WAITING -> RUNNING. Taking the
    # write lock at BEGIN makes every storage transaction serialisable.

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(storage.engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    storage.engine.dispose()  # drop pooled connections made before the hooks
    return storage


def _server_storage(url: str):
    from optuna.storages import RDBStorage

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgres"):
        kwargs["connect_args"] = {"connect_timeout": connect_timeout()}
    elif url.startswith("mysql"):
        kwargs["connect_args"] = {"connect_timeout": connect_timeout()}
    return _rdb(RDBStorage, url, kwargs)


def _rdb(cls, url: str, engine_kwargs: dict[str, Any]):
    try:
        return cls(url, engine_kwargs=engine_kwargs)
    except ImportError as exc:
        raise SenetError(f"queue storage {redact(url)}: missing database driver ({exc})") from None
    except Exception as exc:
        raise SenetError(f"cannot open queue storage {redact(url)}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause) or type(cause).__name__
    # Database drivers put the useful part on the first line and SQL/links after it.
    return " ".join(text.strip().splitlines()[0].split())


# ---------------------------------------------------------------------------
# Tickets


@dataclass(frozen=True)
class Ticket:
    """A read-only view of one trial."""

    trial_id: int
    number: int
    state: Any  # optuna.trial.TrialState
    point: str
    seed: int
    label: str
    settings: dict[str, Any]
    attrs: dict[str, Any]
    started: float | None
    completed: float | None
    value: float | None

    @property
    def slot(self) -> tuple[str, int]:
        return (self.point, self.seed)

    @property
    def reason(self) -> str:
        return self.attrs.get(T_REASON, "")

    def last_alive(self) -> float | None:
        """Unix time of the last heartbeat, or of the claim if none was written yet."""
        beat = self.attrs.get(T_HEARTBEAT)
        return float(beat) if beat is not None else self.started

    @classmethod
    def from_trial(cls, trial) -> Ticket:
        attrs = trial.user_attrs
        return cls(
            trial_id=trial._trial_id,
            number=trial.number,
            state=trial.state,
            point=attrs.get(T_POINT, ""),
            seed=int(attrs.get(T_SEED, 0)),
            label=attrs.get(T_LABEL, ""),
            settings=attrs.get(T_SETTINGS, {}),
            attrs=dict(attrs),
            started=trial.datetime_start.timestamp() if trial.datetime_start else None,
            completed=trial.datetime_complete.timestamp() if trial.datetime_complete else None,
            value=trial.value if trial.values and len(trial.values) == 1 else None,
        )


@dataclass
class SlotCounts:
    done: int = 0
    running: int = 0
    failed: int = 0
    queued: int = 0

    @property
    def total(self) -> int:
        return self.done + self.running + self.failed + self.queued

    @property
    def left(self) -> int:
        return self.running + self.queued


def slot_state(tickets: Iterable[Ticket]) -> str:
    """done > running > queued > failed: the best any ticket of the slot has reached."""
    from optuna.trial import TrialState

    states = {t.state for t in tickets}
    if TrialState.COMPLETE in states:
        return "done"
    if TrialState.RUNNING in states:
        return "running"
    if TrialState.WAITING in states:
        return "queued"
    return "failed"


class GridQueue:
    """The tickets of one grid (study) in a storage."""

    def __init__(self, storage, study_id: int, name: str) -> None:
        self.storage = storage
        self.study_id = study_id
        self.name = name

    # -- studies

    @classmethod
    def open(cls, storage, name: str) -> GridQueue:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            raise SenetError(
                f"grid {name!r} is not queued in this storage; run `senet queue {name}` first"
            ) from None
        return cls(storage, study_id, name)

    @classmethod
    def open_or_create(cls, storage, name: str) -> tuple[GridQueue, bool]:
        from optuna.exceptions import DuplicatedStudyError
        from optuna.study import StudyDirection

        try:
            return cls(storage, storage.get_study_id_from_name(name), name), False
        except KeyError:
            pass
        try:
            # Lower top-1 error is better; Optuna's best_trial then means the best point.
            study_id = storage.create_new_study([StudyDirection.MINIMIZE], name)
            return cls(storage, study_id, name), True
        except DuplicatedStudyError:  # another `senet queue` created it meanwhile
            return cls(storage, storage.get_study_id_from_name(name), name), False

    @classmethod
    def all(cls, storage) -> list[GridQueue]:
        return [
            cls(storage, s._study_id, s.study_name)
            for s in storage.get_all_studies()
            if A_GRID in s.user_attrs
        ]

    def attrs(self) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(self.study_id)

    def set_attr(self, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(self.study_id, key, value)

    # -- reading

    def tickets(self) -> list[Ticket]:
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        return [Ticket.from_trial(t) for t in trials if T_POINT in t.user_attrs]

    def ticket(self, trial_id: int) -> Ticket:
        return Ticket.from_trial(self.storage.get_trial(trial_id))

    def slots(self, tickets: list[Ticket] | None = None) -> dict[tuple[str, int], list[Ticket]]:
        by_slot: dict[tuple[str, int], list[Ticket]] = defaultdict(list)
        for t in self.tickets() if tickets is None else tickets:
            by_slot[t.slot].append(t)
        return dict(by_slot)

    def counts(self, tickets: list[Ticket] | None = None) -> SlotCounts:
        counts = SlotCounts()
        for group in self.slots(tickets).values():
            state = slot_state(group)
            setattr(counts, state, getattr(counts, state) + 1)
        return counts

    def eta_seconds(
        self, tickets: list[Ticket] | None = None, idle_workers: int = 0
    ) -> float | None:
        """Median duration of finished trainings x points left / workers on the grid
        (those running a point, plus `idle_workers` about to take one)."""
        from optuna.trial import TrialState

        tickets = self.tickets() if tickets is None else tickets
        durations = [
            t.completed - t.started
            for t in tickets
            if t.state == TrialState.COMPLETE and t.completed and t.started
        ]
        counts = self.counts(tickets)
        if not durations or counts.left == 0:
            return 0.0 if counts.left == 0 else None
        parallel = max(1, counts.running + (idle_workers if counts.queued else 0))
        return statistics.median(durations) * counts.left / parallel

    # -- writing

    def enqueue(
        self,
        point: str,
        seed: int,
        label: str,
        settings: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> int:
        from optuna.trial import FrozenTrial, TrialState

        attrs = {T_POINT: point, T_SEED: seed, T_LABEL: label, T_SETTINGS: settings}
        attrs.update(extra or {})
        template = FrozenTrial(
            number=-1,
            state=TrialState.WAITING,
            value=None,
            datetime_start=None,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs=attrs,
            system_attrs={},
            intermediate_values={},
            trial_id=-1,
        )
        return self.storage.create_new_trial(self.study_id, template_trial=template)

    def requeue(self, ticket: Ticket, replaces_reason: str) -> int | None:
        """Queue a fresh ticket for `ticket`'s slot unless the slot is already covered."""
        from optuna.trial import TrialState

        others = self.slots().get(ticket.slot, [])
        covered = {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}
        if any(t.trial_id != ticket.trial_id and t.state in covered for t in others):
            return None
        extra = {T_REPLACES: f"#{ticket.number}: {replaces_reason}"}
        return self.enqueue(ticket.point, ticket.seed, ticket.label, ticket.settings, extra)

    def try_claim(self, ticket: Ticket) -> bool:
        """Atomic WAITING -> RUNNING; False if another worker got there first."""
        from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
        from optuna.trial import TrialState

        try:
            won = self.storage.set_trial_state_values(ticket.trial_id, TrialState.RUNNING)
        except (UpdateFinishedTrialError, StorageInternalError):
            return False
        if won:
            self.beat(ticket.trial_id)
        return bool(won)

    def beat(self, trial_id: int) -> None:
        """Record that this worker still holds the ticket. Raises UpdateFinishedTrialError
        once the ticket has been finished by someone else (reaped)."""
        self.storage.set_trial_user_attr(trial_id, T_HEARTBEAT, time.time())
        self.storage.set_trial_user_attr(trial_id, T_WORKER, worker_name())

    def settle(self, mine: Ticket, grace: float) -> str | None:
        """After a claim: None if this worker should train the slot, else why not.

        Every other WAITING ticket of the slot is claimed and closed first, so that any
        two workers holding tickets of one slot see each other's claims; then the
        lowest-numbered live claim wins, and a finished slot is never trained again.
        """
        from optuna.trial import TrialState

        for other in self.slots().get(mine.slot, []):
            if other.trial_id != mine.trial_id and other.state == TrialState.WAITING:
                if self.try_claim(other):
                    self.close(other, f"duplicate of #{mine.number}")
        now = time.time()
        for other in sorted(self.slots().get(mine.slot, []), key=lambda t: t.number):
            if other.trial_id == mine.trial_id:
                continue
            if other.state == TrialState.COMPLETE:
                return f"already done by #{other.number}"
            live = (other.last_alive() or 0) > now - grace
            if other.state == TrialState.RUNNING and live and other.number < mine.number:
                return f"duplicate of #{other.number}, which is running"
        return None

    def close(self, ticket: Ticket, reason: str) -> bool:
        """End a claimed ticket that will not be trained (PRUNED, not a failure)."""
        from optuna.trial import TrialState

        return self._finish(ticket.trial_id, TrialState.PRUNED, reason)

    def fail(self, trial_id: int, reason: str) -> bool:
        from optuna.trial import TrialState

        return self._finish(trial_id, TrialState.FAIL, reason)

    def complete(self, trial_id: int, value: float, attrs: dict[str, Any]) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        try:
            for key, val in attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, val)
            return bool(
                self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
            )
        except UpdateFinishedTrialError:
            return False

    def _finish(self, trial_id: int, state, reason: str) -> bool:
        """True if this call made the transition; False if the ticket had already ended.
        The reason is written first because finished trials cannot be updated."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.storage.set_trial_user_attr(trial_id, T_REASON, reason)
            return bool(self.storage.set_trial_state_values(trial_id, state))
        except UpdateFinishedTrialError:
            return False

    def reap(self, grace: float, now: float | None = None) -> list[Ticket]:
        """Fail RUNNING tickets whose heartbeat is older than `grace` and requeue them.
        Returns the tickets this call reaped (each one is reaped by exactly one caller)."""
        from optuna.exceptions import StorageInternalError
        from optuna.trial import TrialState

        now = time.time() if now is None else now
        reaped = []
        for t in self.tickets():
            if t.state != TrialState.RUNNING:
                continue
            last = t.last_alive()
            if last is not None and now - last <= grace:
                continue
            silent = "never" if last is None else f"{now - last:.0f}s"
            reason = f"worker lost ({t.attrs.get(T_WORKER, '?')}: no heartbeat for {silent})"
            try:
                if self.fail(t.trial_id, reason):
                    self.requeue(t, "worker lost")
                    reaped.append(t)
            except StorageInternalError:
                continue  # busy database: the next reaper pass will retry
        return reaped

    def waiting(self, tickets: list[Ticket] | None = None) -> list[Ticket]:
        """In claim order: points taken back from a lost worker first (they have a
        checkpoint to resume), then queue order."""
        from optuna.trial import TrialState

        tickets = self.tickets() if tickets is None else tickets
        return sorted(
            (t for t in tickets if t.state == TrialState.WAITING),
            key=lambda t: (T_REPLACES not in t.attrs, t.number),
        )


# ---------------------------------------------------------------------------
# Queuing a grid


@dataclass
class QueueResult:
    grid: str
    added: int
    retried: int
    existing: int
    failed_left: int


def queue_grid(storage, grid, seeds: list[int] | None, retry_failed: bool) -> QueueResult:
    """Add a ticket for every (point, seed) of `grid` that has none yet; with
    `retry_failed`, also for slots whose tickets all failed. Idempotent."""
    queue, _ = GridQueue.open_or_create(storage, grid.name)
    attrs = queue.attrs()
    known_points = dict(attrs.get(A_POINTS, {}))
    points = {p.id: {"label": p.label, "settings": p.settings} for p in grid.points}
    meta = {
        A_GRID: grid.name,
        A_TITLE: grid.title,
        A_PAPER_TABLE: grid.paper_table,
        A_PAPER_REF: grid.paper_ref,
        A_GRID_FILE: str(grid.path),
        A_POINTS: {**known_points, **points},
    }
    for key, value in meta.items():
        if attrs.get(key) != value:
            queue.set_attr(key, value)

    slots = queue.slots()
    result = QueueResult(grid.name, 0, 0, 0, 0)
    # Seed-major order: workers finish one complete table before starting the next seed.
    for seed in seeds if seeds is not None else grid.seeds:
        for p in grid.points:
            existing = slots.get((p.id, seed))
            if not existing:
                queue.enqueue(p.id, seed, p.label, p.settings)
                result.added += 1
            elif slot_state(existing) == "failed":
                if retry_failed:
                    last = max(existing, key=lambda t: t.number)
                    queue.enqueue(
                        p.id, seed, p.label, p.settings,
                        {T_REPLACES: f"#{last.number}: retry of a failed point"},
                    )
                    result.retried += 1
                else:
                    result.failed_left += 1
            else:
                result.existing += 1
    return result


# ---------------------------------------------------------------------------
# Tracking (MLflow): reachability and the grid's experiment + parent run


def absolute_tracking_uri(uri: str) -> str:
    """sqlite:///mlflow.db -> sqlite:////abs/mlflow.db, so workers started from another
    folder write to the same database as `senet queue` did."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def check_tracking(uri: str) -> None:
    """Fail in seconds with one line when the tracking backend cannot be reached,
    instead of MLflow's minutes of retries."""
    from senet.tracking import prepare_env

    prepare_env(uri)
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=connect_timeout())
        except requests.RequestException as exc:
            raise SenetError(
                f"cannot reach MLflow tracking server {redact(uri)}: {_one_line(exc)}"
            ) from None
    elif uri.startswith(("postgresql", "postgres:", "mysql", "mssql")):
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
                f"cannot reach MLflow tracking database {redact(uri)}: {_one_line(exc)}"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir():
            raise SenetError(f"tracking URI {uri}: folder {folder} does not exist")


def tag_filter(tags: dict[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def ensure_grid_tracking(queue: GridQueue, tracking_uri: str) -> dict[str, str]:
    """Create the grid's MLflow experiment and parent run once, and record them in the
    study so every worker nests its runs under the same parent without racing to create
    it. Re-running finds the existing ones (by study attrs, then by tags)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    attrs = queue.attrs()
    if attrs.get(A_TRACKING_URI) not in (None, tracking_uri):
        # Queued before against another tracking store: its parent run is not in this one.
        attrs = {k: v for k, v in attrs.items() if k not in (A_PARENT_RUN, A_EXPERIMENT_ID)}
    experiment_name = attrs.get(A_EXPERIMENT) or queue.name
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            from senet.tracking import TRAINING_EXPERIMENT_TAGS

            experiment_id = client.create_experiment(
                experiment_name, tags={A_GRID: queue.name, **TRAINING_EXPERIMENT_TAGS}
            )
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment_id)
        parent = attrs.get(A_PARENT_RUN)
        if parent is None:
            found = client.search_runs(
                [experiment_id],
                tag_filter({A_GRID: queue.name, "senet.role": "grid"}),
                max_results=1,
            )
            if found:
                parent = found[0].info.run_id
            else:
                run = client.create_run(
                    experiment_id,
                    tags={A_GRID: queue.name, "senet.role": "grid"},
                    run_name=queue.name,
                )
                parent = run.info.run_id
    except SenetError:
        raise
    except Exception as exc:
        raise SenetError(f"MLflow tracking {redact(tracking_uri)}: {_one_line(exc)}") from None
    wanted = {
        A_EXPERIMENT: experiment_name,
        A_EXPERIMENT_ID: experiment_id,
        A_PARENT_RUN: parent,
        A_TRACKING_URI: tracking_uri,
    }
    for key, value in wanted.items():
        if attrs.get(key) != value:
            queue.set_attr(key, value)
    return wanted


def set_parent_status(tracking_uri: str, run_id: str, status: str) -> None:
    """RUNNING while the grid has work left, FINISHED once drained, so no parent run
    is left RUNNING after a grid ends."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_run(run_id).info.status == status:
        return
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=status)
