"""The grid queue: one Optuna study per grid, one trial ("ticket") per point x seed.

Optuna is used as a shared, durable table of tickets, not as a sampler:

* tickets are created WAITING with the point's settings in user attrs, never
  through `study.ask()` or GridSampler (which hand one point to several workers);
* a worker claims a ticket by the atomic WAITING -> RUNNING transition (see
  `senet.queue.store`, the only module that talks to Optuna's storage);
* a claimed ticket carries a heartbeat user attr; any worker or `senet status`
  moves a RUNNING ticket with a stale heartbeat to FAIL ("worker lost") and, if it
  won that transition, queues a replacement ticket for the same point and seed;
* finished transitions are atomic too, so two reapers cannot both requeue one ticket.

A (point, seed) pair is a "slot"; several tickets may exist for a slot over time
(retries, replacements, rare duplicates). The slot is done when any ticket is
COMPLETE. Tickets closed without training (duplicates) end PRUNED, real failures FAIL.

Each training once (issue 10): every ticket carries its training key
(`senet.settings.identity.training_key`), and a grid records its slots with their keys
(study attr A_SLOTS, the grid as it now stands). A slot's tickets are the tickets of
its KEY in every grid of the storage, so a point shared by several grids is queued
once (by the first grid that needs it), trained once, and counts as done in each.
`senet queue` runs under a storage-wide lock (`queue_lock`), which makes "is this key
covered anywhere? else add a ticket" atomic; claims stay per ticket as before, and
`settle` compares claims across grids by key, so even a duplicate ticket cannot
train a key twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from senet.errors import SenetError, TicketFinished, one_line
from senet.queue.store import TicketStore, busy_storage_errors
from senet.tracking.store import (
    A_GRID,
    A_GRID_FILE,
    A_PAPER_REF,
    A_PAPER_TABLE,
    A_POINTS,
    A_SLOTS,
    A_TITLE,
    T_GRACE,
    T_HEARTBEAT,
    T_KEY,
    T_LABEL,
    T_POINT,
    T_REASON,
    T_REPLACES,
    T_SEED,
    T_SETTINGS,
    T_WORKER,
)
from senet.urls import (
    DEFAULT_STORAGE,
    backend,
    env_seconds,
    password_hint,
    redact,
    resolve_storage,
    sqlite_path,
    with_driver,
)

__all__ = ["DEFAULT_STORAGE", "GridQueue", "QueueResult", "SlotCounts", "Ticket", "queue_grid",
           "queue_lock"]

HEARTBEAT_ENV = "SENET_HEARTBEAT_S"
GRACE_ENV = "SENET_HEARTBEAT_GRACE_S"


def heartbeat_interval() -> float:
    return env_seconds(HEARTBEAT_ENV, 10.0)


def grace_period() -> float:
    """How long a heartbeat may be silent before its ticket is taken back. Keep it
    well above the interval: a busy CPU can delay the heartbeat thread by seconds."""
    return env_seconds(GRACE_ENV, 60.0)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    key: str = ""  # the training key; "<grid>/<point>/<seed>" for tickets queued before keys

    @property
    def slot(self) -> tuple[str, int]:
        return (self.point, self.seed)

    def grace(self, default: float) -> float:
        """The grace its claiming worker was started with (recorded at the claim), so a
        reaper with a shorter one never takes a live worker's ticket."""
        try:
            return float(self.attrs.get(T_GRACE, default))
        except (TypeError, ValueError):
            return default

    def is_live(self, now: float, default_grace: float) -> bool:
        last = self.last_alive()
        return last is not None and now - last <= self.grace(default_grace)

    @property
    def reason(self) -> str:
        return self.attrs.get(T_REASON, "")

    def last_alive(self) -> float | None:
        """Unix time of the last heartbeat, or of the claim if none was written yet."""
        beat = self.attrs.get(T_HEARTBEAT)
        return float(beat) if beat is not None else self.started

    @classmethod
    def from_trial(cls, trial, trial_id: int, grid: str = "") -> Ticket:
        attrs = trial.user_attrs
        point, seed = attrs.get(T_POINT, ""), int(attrs.get(T_SEED, 0))
        return cls(
            trial_id=trial_id,
            number=trial.number,
            state=trial.state,
            point=point,
            seed=seed,
            label=attrs.get(T_LABEL, ""),
            settings=attrs.get(T_SETTINGS, {}),
            attrs=dict(attrs),
            started=trial.datetime_start.timestamp() if trial.datetime_start else None,
            completed=trial.datetime_complete.timestamp() if trial.datetime_complete else None,
            value=trial.value if trial.values and len(trial.values) == 1 else None,
            key=str(attrs.get(T_KEY) or f"{grid}/{point}/{seed}"),
        )


@dataclass
class SlotCounts:
    done: int = 0
    running: int = 0
    failed: int = 0
    queued: int = 0
    pruned: int = 0  # a search's trials stopped early on purpose: nothing to retry

    @property
    def total(self) -> int:
        return self.done + self.running + self.failed + self.queued + self.pruned

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


def reported_state(tickets: Iterable[Ticket]) -> str:
    """The slot's state as counted and shown: slot_state, except that a slot whose every
    ticket was pruned (a search's trial stopped early, a grid's cancelled point) is
    "pruned", not "failed"."""
    tickets = list(tickets)
    state = slot_state(tickets)
    if state == "failed" and tickets and all(t.state.name == "PRUNED" for t in tickets):
        return "pruned"
    return state


class GridQueue:
    """The tickets of one grid (study) in a storage."""

    def __init__(self, storage: Any, study_id: int, name: str) -> None:
        """``storage``: what `senet.queue.storage.open_storage` returns, or a TicketStore."""
        self.store = TicketStore.wrap(storage)
        self.study_id = study_id
        self.name = name

    # -- studies

    @classmethod
    def open(cls, storage: Any, name: str) -> GridQueue:
        store = TicketStore.wrap(storage)
        study_id = store.study_id(name)
        if study_id is None:
            raise SenetError(
                f"grid {name!r} is not queued in this storage; run `senet queue {name}` first"
            )
        return cls(store, study_id, name)

    @classmethod
    def open_or_create(cls, storage: Any, name: str) -> tuple[GridQueue, bool]:
        store = TicketStore.wrap(storage)
        study_id, created = store.create_study(name)
        return cls(store, study_id, name), created

    @classmethod
    def all(cls, storage: Any) -> list[GridQueue]:
        store = TicketStore.wrap(storage)
        return [cls.open(store, name) for name in store.study_names(with_attr=A_GRID)]

    def attrs(self) -> dict[str, Any]:
        return self.store.study_attrs(self.study_id)

    def set_attr(self, key: str, value: Any) -> None:
        self.store.set_study_attr(self.study_id, key, value)

    # -- reading

    def tickets(self) -> list[Ticket]:
        """This grid's own tickets."""
        return [
            Ticket.from_trial(t, self.store.trial_id(self.study_id, t.number), self.name)
            for t in self.store.trials(self.study_id)
            if T_POINT in t.user_attrs
        ]

    def slot_keys(self, attrs: dict[str, Any] | None = None) -> dict[tuple[str, int], str] | None:
        """(point, seed) -> training key for the grid as it now stands; None for a grid
        queued before keys existed (its slots are then those of its tickets)."""
        attrs = self.attrs() if attrs is None else attrs
        recorded = attrs.get(A_SLOTS)
        if recorded is None:
            return None
        return {(str(point), int(seed)): str(key) for point, seed, key in recorded}

    def related_tickets(self) -> list[Ticket]:
        """Own tickets plus every other grid's tickets that train one of this grid's
        keys: the tickets that decide this grid's slot states."""
        keys = self.slot_keys()
        own = self.tickets()
        if keys is None:
            return own
        wanted = set(keys.values())
        others = [t for queue in GridQueue.all(self.store) if queue.study_id != self.study_id
                  for t in queue.tickets() if t.key in wanted]
        return own + others

    def ticket(self, trial_id: int) -> Ticket:
        return Ticket.from_trial(self.store.trial(trial_id), trial_id, self.name)

    def slots(self, tickets: list[Ticket] | None = None) -> dict[tuple[str, int], list[Ticket]]:
        """(point, seed) -> the tickets of its key, for the grid as it now stands. A slot
        with no ticket yet (another `senet queue` records the slots first and adds their
        tickets after) is left out: it is neither queued nor failed."""
        tickets = self.related_tickets() if tickets is None else tickets
        keys = self.slot_keys()
        if keys is None:
            by_slot: dict[tuple[str, int], list[Ticket]] = defaultdict(list)
            for t in tickets:
                by_slot[t.slot].append(t)
            return dict(by_slot)
        by_key: dict[str, list[Ticket]] = defaultdict(list)
        for t in tickets:
            by_key[t.key].append(t)
        return {slot: by_key[key] for slot, key in keys.items() if key in by_key}

    def counts(self, tickets: list[Ticket] | None = None) -> SlotCounts:
        counts = SlotCounts()
        for group in self.slots(tickets).values():
            state = reported_state(group)
            setattr(counts, state, getattr(counts, state) + 1)
        return counts

    def eta_seconds(
        self, tickets: list[Ticket] | None = None, idle_workers: int = 0
    ) -> float | None:
        """Median duration of finished trainings x points left / workers on the grid
        (those running a point, plus `idle_workers` about to take one)."""
        from optuna.trial import TrialState

        tickets = self.related_tickets() if tickets is None else tickets
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

    def _key_tickets(self, key: str) -> list[Ticket]:
        """Every ticket of ``key`` in every grid of the storage, oldest first."""
        queues = GridQueue.all(self.store)
        if all(queue.study_id != self.study_id for queue in queues):
            queues.append(self)  # a study not (yet) marked as a grid
        found = [t for queue in queues for t in queue.tickets() if t.key == key]
        return sorted({t.trial_id: t for t in found}.values(), key=lambda t: t.trial_id)

    # -- writing

    def enqueue(
        self,
        point: str,
        seed: int,
        label: str,
        settings: dict[str, Any],
        extra: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> int:
        attrs = {T_POINT: point, T_SEED: seed, T_LABEL: label, T_SETTINGS: settings}
        if key is not None:
            attrs[T_KEY] = key
        attrs.update(extra or {})
        return self.store.add_waiting(self.study_id, attrs)

    def requeue(self, ticket: Ticket, replaces_reason: str) -> int | None:
        """Queue a fresh ticket for `ticket`'s key unless it is already covered (in any
        grid) or no longer part of this grid."""
        from optuna.trial import TrialState

        covered = {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}
        others = self._key_tickets(ticket.key)
        if any(t.trial_id != ticket.trial_id and t.state in covered for t in others):
            return None
        keys = self.slot_keys()
        if keys is not None and ticket.key not in keys.values():
            return None  # the point was removed from the grid: nothing to take over
        extra = {T_REPLACES: f"#{ticket.number}: {replaces_reason}"}
        key = ticket.attrs.get(T_KEY)
        return self.enqueue(ticket.point, ticket.seed, ticket.label, ticket.settings, extra,
                            key=key)

    def try_claim(self, ticket: Ticket, grace: float | None = None) -> bool:
        """Atomic WAITING -> RUNNING; False if another worker got there first. ``grace``
        is recorded with the claim, so every reaper honours this worker's grace."""
        won = self.store.claim(ticket.trial_id)
        if won:
            if grace is not None:
                self.store.set_trial_attr(ticket.trial_id, T_GRACE, float(grace))
            self.beat(ticket.trial_id)
        return won

    def claim(self, grace: float, k: int = 1, *,
              joins: Callable[[list[Ticket], Ticket], bool] | None = None,
              log: Callable[[str], None] | None = None) -> list[Ticket]:
        """Claim the next ticket to train and, with ``k`` > 1, up to ``k`` - 1 more WAITING
        tickets that ``joins(claimed, ticket)`` lets train beside the claimed ones (seeds of
        the point, or other points that can share one packed model), each settled as its
        own claim. Returns the claimed tickets, [] when nothing here can be claimed; a
        ticket that loses its settlement is closed, and ``log`` hears why."""
        first = next((t for t in self.waiting() if self._claim_one(t, grace, log)), None)
        if first is None:
            return []
        mine = [first]
        for ticket in self.waiting() if k > 1 and joins is not None else []:
            if len(mine) >= k:
                break
            if joins(mine, ticket) and self._claim_one(ticket, grace, log):
                mine.append(ticket)
        return mine

    def _claim_one(self, ticket: Ticket, grace: float, log: Callable[[str], None] | None
                   ) -> bool:
        if not self.try_claim(ticket, grace):
            return False
        reason = self.settle(ticket, grace)
        if reason is None:
            return True
        self.close(ticket, reason)
        if log is not None:
            log(f"{self.name}: ticket #{ticket.number} closed: {reason}")
        return False

    def beat(self, trial_id: int) -> None:
        """Record that this worker still holds the ticket. Raises TicketFinished once the
        ticket has been finished by someone else (reaped)."""
        self.store.set_trial_attr(trial_id, T_HEARTBEAT, time.time())
        self.store.set_trial_attr(trial_id, T_WORKER, worker_name())

    def settle(self, mine: Ticket, grace: float) -> str | None:
        """After a claim: None if this worker should train the ticket's key, else why not.

        Every other WAITING ticket of the key (in any grid) is claimed and closed first,
        so that any two workers holding tickets of one key see each other's claims; then
        the oldest live claim wins, and a finished key is never trained again.
        """
        from optuna.trial import TrialState

        for other in self._key_tickets(mine.key):
            if other.trial_id != mine.trial_id and other.state == TrialState.WAITING:
                if self.try_claim(other):
                    self.close(other, f"duplicate of {self.name} #{mine.number}")
        now = time.time()
        for other in self._key_tickets(mine.key):
            if other.trial_id == mine.trial_id:
                continue
            if other.state == TrialState.COMPLETE:
                return f"already done by ticket {other.trial_id}"
            live = other.is_live(now, grace)
            if other.state == TrialState.RUNNING and live and other.trial_id < mine.trial_id:
                return f"duplicate of ticket {other.trial_id}, which is running"
        return None

    def close(self, ticket: Ticket, reason: str) -> bool:
        """End a claimed ticket that will not be trained (PRUNED, not a failure)."""
        return self._finish(ticket.trial_id, "PRUNED", {T_REASON: reason})

    def fail(self, trial_id: int, reason: str) -> bool:
        return self._finish(trial_id, "FAIL", {T_REASON: reason})

    def complete(self, trial_id: int, value: float, attrs: dict[str, Any]) -> bool:
        return self._finish(trial_id, "COMPLETE", attrs, value)

    def _finish(
        self, trial_id: int, state: str, attrs: dict[str, Any], value: float | None = None
    ) -> bool:
        """True if this call made the transition; False if the ticket had already ended.
        The attrs are written first because finished trials cannot be updated."""
        try:
            for key, val in attrs.items():
                self.store.set_trial_attr(trial_id, key, val)
        except TicketFinished:
            return False
        return self.store.finish(trial_id, state, value)

    def reap(self, grace: float, now: float | None = None) -> list[Ticket]:
        """Fail RUNNING tickets whose heartbeat is older than their grace and requeue
        them. ``grace`` applies only to tickets that recorded none at their claim.
        Returns the tickets this call reaped (each one is reaped by exactly one caller)."""
        from optuna.trial import TrialState

        now = time.time() if now is None else now
        reaped = []
        for t in self.tickets():
            if t.state != TrialState.RUNNING or t.is_live(now, grace):
                continue
            last = t.last_alive()
            silent = "never" if last is None else f"{now - last:.0f}s"
            reason = f"worker lost ({t.attrs.get(T_WORKER, '?')}: no heartbeat for {silent})"
            try:
                if self.fail(t.trial_id, reason):
                    self.requeue(t, "worker lost")
                    reaped.append(t)
            except busy_storage_errors():
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
# One `senet queue` at a time per storage


LOCK_NAME = "senet-queue"


@contextmanager
def queue_lock(url: str | None) -> Iterator[None]:
    """Serialise `senet queue` runs on one storage, so that concurrent queueing of a
    grid makes one experiment, one parent run and one ticket per key. A file lock
    (fcntl) beside a journal or SQLite file; a session advisory lock on PostgreSQL
    (GET_LOCK on MySQL). Taken before the storage is opened: creating a new SQLite
    storage's tables from several processes at once races too."""
    url = resolve_storage(url)
    kind = backend(url)
    path = Path(url) if "://" not in url else sqlite_path(url) if kind == "sqlite" else None
    if path is not None:
        lock_file = path.with_name(path.name + ".senet-lock")  # not Optuna's own .lock
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_file, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if kind in ("postgresql", "postgres", "mysql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(with_driver(url), poolclass=sqlalchemy.pool.NullPool)
        lock_id = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big",
                                 signed=True)
        try:
            with _connected(engine, url) as conn:
                if kind == "mysql":
                    conn.execute(sqlalchemy.text("SELECT GET_LOCK(:n, -1)"), {"n": LOCK_NAME})
                else:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
                conn.commit()
                try:
                    yield
                finally:
                    if kind == "mysql":
                        conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": LOCK_NAME})
                    else:
                        conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"),
                                     {"k": lock_id})
                    conn.commit()
        finally:
            engine.dispose()
        return
    yield  # an unknown kind: open_storage refuses it with its own line


@contextmanager
def _connected(engine: Any, url: str) -> Iterator[Any]:
    """A connection, or one line on why the server refused it (a wrong password, say);
    errors raised while it is held pass through untouched."""
    try:
        conn = engine.connect()
    except Exception as exc:  # noqa: BLE001 - any driver failure to connect gets one line
        raise SenetError(f"cannot open queue storage {redact(url)}: "
                         f"{password_hint(url, one_line(exc))}") from None
    with conn:
        yield conn


# ---------------------------------------------------------------------------
# Queuing a grid


@dataclass
class QueueResult:
    grid: str
    added: int
    retried: int
    existing: int
    failed_left: int
    shared: int = 0  # slots whose training another grid already queued, runs or did
    done: int = 0  # slots whose training is already done (here or in another grid)
    slots: int = 0
    dropped: list[str] = field(default_factory=list)  # labels removed since the last queue
    new_labels: list[str] = field(default_factory=list)  # labels added since the last queue
    cancelled: int = 0  # waiting or running tickets of removed points, closed

    @property
    def all_done(self) -> bool:
        return self.slots > 0 and self.done == self.slots


def grid_keys(grid, seeds: list[int]) -> dict[tuple[str, int], str]:
    """(point id, seed) -> training key for every slot of ``grid``."""
    from senet.settings.identity import key_of, resolved_settings

    resolved = {p.id: resolved_settings(p.settings) for p in grid.points}
    return {(p.id, seed): key_of(resolved[p.id], seed) for seed in seeds for p in grid.points}


def queue_grid(storage, grid, seeds: list[int] | None, retry_failed: bool,
               extra_slots: dict[tuple[str, int], str] | None = None) -> QueueResult:
    """Add a ticket for every (point, seed) of `grid` whose training key has none in any
    grid of the storage; with `retry_failed`, also for keys whose tickets all failed.
    ``extra_slots``: (point, seed) -> key of slots beyond `seeds` that the grid keeps
    (seeds the queue added to an adaptive grid's points, senet.queue.adaptive).
    Idempotent; call it under `queue_lock` when other processes may queue at once."""
    from optuna.trial import TrialState

    queue, _ = GridQueue.open_or_create(storage, grid.name)
    attrs = queue.attrs()
    recorded = attrs.get(A_GRID_FILE)
    if recorded and recorded != str(grid.path) and Path(recorded).is_file():
        raise SenetError(
            f"{grid.path}: grid name {grid.name!r} is already taken in this queue by "
            f"{recorded}; declare another with name = \"...\" at the top of the file"
        )
    seeds = list(seeds if seeds is not None else grid.seeds)
    keys = grid_keys(grid, seeds)
    keys.update(extra_slots or {})
    labels = {p.id: p.label for p in grid.points}
    old_points = attrs.get(A_POINTS, {})
    old_keys = queue.slot_keys(attrs)
    if old_keys is None:  # queued before keys: its slots are those of its tickets
        old_keys = {t.slot: t.key for t in queue.tickets()}
    result = QueueResult(grid.name, 0, 0, 0, 0, slots=len(keys))
    old_labels = {old_points.get(p, {}).get("label", p) for p, _ in old_keys}
    new_labels = {p.label for p in grid.points}
    if old_keys:
        result.dropped = sorted(old_labels - new_labels)
        result.new_labels = sorted(new_labels - old_labels)

    points = {p.id: {"label": p.label, "settings": p.settings} for p in grid.points}
    meta = {
        A_GRID: grid.name,
        A_TITLE: grid.title,
        A_PAPER_TABLE: grid.paper_table,
        A_PAPER_REF: grid.paper_ref,
        A_GRID_FILE: str(grid.path),
        A_POINTS: points,
        A_SLOTS: [[point, seed, key] for (point, seed), key in keys.items()],
    }
    for name, value in meta.items():
        if attrs.get(name) != value:
            queue.set_attr(name, value)

    # Every ticket in the storage, by key: a key covered anywhere is not queued again.
    queues = GridQueue.all(storage)
    by_key: dict[str, list[Ticket]] = defaultdict(list)
    current: set[str] = set()  # keys some grid still holds, this one included
    for other in queues:
        for t in other.tickets():
            by_key[t.key].append(t)
        if other.study_id != queue.study_id:
            current.update((other.slot_keys() or {}).values())
    current.update(keys.values())

    # Tickets of points removed from this grid: cancelled unless done or still wanted.
    for t in queue.tickets():
        if t.key in current or t.state not in (TrialState.WAITING, TrialState.RUNNING):
            continue
        if t.state == TrialState.WAITING and not queue.try_claim(t):
            continue
        if queue.close(t, "cancelled: the point was removed from the grid"):
            result.cancelled += 1

    own = {t.trial_id for t in queue.tickets()}
    # Seed-major order: workers finish one complete table before starting the next seed.
    # The points run backwards on every other seed, so that a worker that finishes first
    # draws a different point next: with as many workers as points, the seeds of a point
    # that trains slower than the others spread over the workers instead of all landing
    # on one, which would finish last, alone.
    points = [p.id for p in grid.points]
    order = [(point_id, seed) for i, seed in enumerate(seeds)
             for point_id in (points if i % 2 == 0 else points[::-1])]
    listed = set(order)
    order += [slot for slot in keys if slot not in listed]  # the extra slots
    for point_id, seed in order:
        key = keys[(point_id, seed)]
        point = grid.point(point_id)
        existing = by_key.get(key, [])
        state = slot_state(existing) if existing else None
        elsewhere = any(t.trial_id not in own for t in existing)
        if state is None:
            queue.enqueue(point_id, seed, labels[point_id], point.settings, key=key)
            result.added += 1
        elif state == "failed":
            if retry_failed:
                last = max(existing, key=lambda t: t.trial_id)
                queue.enqueue(point_id, seed, labels[point_id], point.settings,
                              {T_REPLACES: f"ticket {last.trial_id}: retry of a failed point"},
                              key=key)
                result.retried += 1
            else:
                result.failed_left += 1
        else:
            result.existing += 1
            result.shared += elsewhere
            result.done += state == "done"
    return result


def overall_counts(storage: Any) -> tuple[SlotCounts, int]:
    """(state counts over the unique trainings of every grid's current slots, how many
    grid slots map onto them): a training shared by grids counts once here."""
    queues = GridQueue.all(storage)
    by_key: dict[str, list[Ticket]] = defaultdict(list)
    wanted: set[str] = set()
    slots = 0
    for queue in queues:
        tickets = queue.tickets()
        for t in tickets:
            by_key[t.key].append(t)
        keys = queue.slot_keys()
        current = set(keys.values()) if keys is not None else {t.key for t in tickets}
        slots += len(keys) if keys is not None else len(current)
        wanted |= current
    counts = SlotCounts()
    for key in wanted:
        state = reported_state(by_key.get(key, []))
        setattr(counts, state, getattr(counts, state) + 1)
    return counts, slots
