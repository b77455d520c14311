"""The grid queue: one Optuna study per grid, one trial ("ticket") per point x seed.

Optuna is used as a shared, durable table of tickets, not as a sampler:

* tickets are created WAITING with the point's settings in user attrs, never
  through `study.ask()` or GridSampler (which hand one point to several workers);
* a worker claims a ticket by the atomic WAITING -> RUNNING transition (see
  `senet.ticket_store`, the only module that talks to Optuna's storage);
* a claimed ticket carries a heartbeat user attr; any worker or `senet status`
  moves a RUNNING ticket with a stale heartbeat to FAIL ("worker lost") and, if it
  won that transition, queues a replacement ticket for the same point and seed;
* finished transitions are atomic too, so two reapers cannot both requeue one ticket.

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
from typing import Any

from senet.errors import SenetError, TicketFinished
from senet.storage import DEFAULT_STORAGE, env_seconds
from senet.ticket_store import TicketStore, busy_storage_errors
from senet.tracking import (
    A_GRID,
    A_GRID_FILE,
    A_PAPER_REF,
    A_PAPER_TABLE,
    A_POINTS,
    A_TITLE,
    T_HEARTBEAT,
    T_LABEL,
    T_POINT,
    T_REASON,
    T_REPLACES,
    T_SEED,
    T_SETTINGS,
    T_WORKER,
)

__all__ = ["DEFAULT_STORAGE", "GridQueue", "QueueResult", "SlotCounts", "Ticket", "queue_grid"]

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
    def from_trial(cls, trial, trial_id: int) -> Ticket:
        attrs = trial.user_attrs
        return cls(
            trial_id=trial_id,
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

    def __init__(self, storage: Any, study_id: int, name: str) -> None:
        """``storage``: what `senet.storage.open_storage` returns, or a TicketStore."""
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
        return [
            Ticket.from_trial(t, self.store.trial_id(self.study_id, t.number))
            for t in self.store.trials(self.study_id)
            if T_POINT in t.user_attrs
        ]

    def ticket(self, trial_id: int) -> Ticket:
        return Ticket.from_trial(self.store.trial(trial_id), trial_id)

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
        attrs = {T_POINT: point, T_SEED: seed, T_LABEL: label, T_SETTINGS: settings}
        attrs.update(extra or {})
        return self.store.add_waiting(self.study_id, attrs)

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
        won = self.store.claim(ticket.trial_id)
        if won:
            self.beat(ticket.trial_id)
        return won

    def beat(self, trial_id: int) -> None:
        """Record that this worker still holds the ticket. Raises TicketFinished once the
        ticket has been finished by someone else (reaped)."""
        self.store.set_trial_attr(trial_id, T_HEARTBEAT, time.time())
        self.store.set_trial_attr(trial_id, T_WORKER, worker_name())

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
        """Fail RUNNING tickets whose heartbeat is older than `grace` and requeue them.
        Returns the tickets this call reaped (each one is reaped by exactly one caller)."""
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
