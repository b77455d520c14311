"""Adaptive seeds: add a seed only where a claim is still undecided.

A grid with ``seeds = { min = 2, max = 8 }`` is queued with seeds 0..min-1 for every
point (senet.queue.tickets.queue_grid), and `senet queue` records the grid's claims,
each resolved to its two points (study attr A_CLAIMS), with the design (A_ADAPTIVE).
Before a worker claims a ticket it calls ``refill``: every claim is judged by the
stopping rule of senet.queue.sequential on the finished seeds of its two points, and
a point gets one more seed when a claim it takes part in is still open, its seeds so
far have finished, and it has fewer than max. A decided claim asks for nothing, so
points that only serve decided claims stop where they are.

Adding a seed is "record the slot in A_SLOTS, then queue a ticket for its training
key unless one exists anywhere in the storage": the same step `senet queue` takes, and
under the same storage-wide lock (``queue_lock``), with the state read again once the
lock is held. So two workers that both see an open claim add its seed once, and a key
another grid already trains is shared, not trained again.

Claims are judged on the tickets' values, the final top-1 error: a claim on another
metric (top-5) is judged in the tables but asks for no seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from senet.queue import sequential as seq
from senet.queue.tickets import GridQueue, Ticket, queue_lock, slot_state, worker_name
from senet.tracking.store import A_PARENT_RUN, A_POINTS, A_SLOTS, A_TRACKING_URI

A_ADAPTIVE = "senet.adaptive"  # {"min": 2, "max": 8, "alpha": 0.05}, or None: fixed seeds
A_CLAIMS = "senet.claims"  # [{"text", "row", "ref", "kind", "metric", "margin", "effect"}]
QUEUE_METRIC = "top1"  # what a ticket's value is


@dataclass
class PointSeeds:
    """One point's seeds as the queue has them."""

    values: list[float] = field(default_factory=list)  # finished, in seed order
    pending: int = 0  # queued or running
    used: set[int] = field(default_factory=set)  # seeds with a slot, whatever its state

    @property
    def tried(self) -> int:
        return len(self.used)


Board = Mapping[str, PointSeeds]  # point id -> its seeds


def design_of(attrs: Mapping[str, Any]) -> seq.Design | None:
    spec = attrs.get(A_ADAPTIVE)
    if not spec:
        return None
    return seq.Design(int(spec["min"]), int(spec["max"]), float(spec.get("alpha", 0.05)))


def claimed(claim: Mapping[str, Any]) -> seq.Claimed | None:
    """The stopping rule's view of a recorded claim; None when the queue cannot judge it."""
    if claim.get("kind") not in seq.KINDS or claim.get("metric", "top1") != QUEUE_METRIC:
        return None
    effect = claim.get("effect")
    return seq.Claimed(claim["kind"], float(claim.get("margin") or 0.0),
                       None if effect is None else float(effect))


def judge(design: seq.Design, claim: Mapping[str, Any], board: Board) -> seq.Decision | None:
    """The claim's state, or None for a claim the queue does not judge. A claim that is
    open but can get no more seeds (failures used up a point's max) is undecided."""
    rule = claimed(claim)
    row, ref = board.get(claim["row"]), board.get(claim["ref"])
    if rule is None or row is None or ref is None:
        return None
    decision = seq.decide(design, rule, row.values, ref.values)
    if decision.state == seq.OPEN and not _can_grow(design, row, ref):
        return seq.Decision(seq.UNDECIDED, decision.seeds, decision.diff, decision.low,
                            decision.high, "no more seeds can be added (max reached)")
    return decision


def _target(design: seq.Design, row: PointSeeds, ref: PointSeeds) -> int:
    """Finished seeds per row the claim's next look needs."""
    return max(design.min_seeds, min(len(row.values), len(ref.values)) + 1)


def _can_grow(design: seq.Design, row: PointSeeds, ref: PointSeeds) -> bool:
    target = _target(design, row, ref)
    return all(p.pending or p.tried < design.max_seeds
               for p in (row, ref) if len(p.values) < target)


def points_to_extend(design: seq.Design, claims: Iterable[Mapping[str, Any]], board: Board
                     ) -> dict[str, list[str]]:
    """point id -> the open claims that ask it for one more seed. A point is asked only
    once its seeds so far cannot reach the claim's next look on their own."""
    asks: dict[str, list[str]] = {}
    for claim in claims:
        decision = judge(design, claim, board)
        if decision is None or decision.state != seq.OPEN:
            continue
        row, ref = board[claim["row"]], board[claim["ref"]]
        target = _target(design, row, ref)
        for point_id, point in ((claim["row"], row), (claim["ref"], ref)):
            short = len(point.values) + point.pending < target
            if short and point.tried < design.max_seeds:
                asks.setdefault(point_id, [])
                if claim["text"] not in asks[point_id]:
                    asks[point_id].append(claim["text"])
    return asks


# ---------------------------------------------------------------------------
# The queue's side


def board_of(queue: GridQueue, attrs: Mapping[str, Any]) -> dict[str, PointSeeds]:
    """Each point's seeds from the tickets of its slots (in any grid of the storage)."""
    board = {point_id: PointSeeds() for point_id in attrs.get(A_POINTS, {})}
    recorded = {(str(p), int(s)) for p, s, _ in attrs.get(A_SLOTS, [])}
    slots = queue.slots()
    for point_id, seed in sorted(recorded, key=lambda slot: slot[1]):
        if point_id not in board:
            continue
        point = board[point_id]
        point.used.add(seed)
        tickets = slots.get((point_id, seed), [])
        # No ticket: one `senet queue` is adding it (refill looks again under the lock,
        # when it is there) or a crash left the slot bare; either way nothing runs it.
        state = slot_state(tickets) if tickets else "failed"
        if state == "done":
            point.values.append(_value(tickets))
        elif state in ("queued", "running"):
            point.pending += 1
    return board


def _value(tickets: list[Ticket]) -> float:
    done = [t.value for t in tickets if t.state.name == "COMPLETE" and t.value is not None]
    return float(done[0]) if done else math.nan


def record(queue: GridQueue, adaptive: Any, claims: list[dict[str, Any]]) -> None:
    """Store the grid's design (None: fixed seeds) and its claims for the workers."""
    spec = None if adaptive is None else {"min": adaptive.min, "max": adaptive.max,
                                          "alpha": adaptive.alpha}
    attrs = queue.attrs()
    if attrs.get(A_ADAPTIVE) != spec:
        queue.set_attr(A_ADAPTIVE, spec)
    if attrs.get(A_CLAIMS, []) != claims:
        queue.set_attr(A_CLAIMS, claims)


def kept_slots(queue: GridQueue, grid: Any) -> dict[tuple[str, int], str]:
    """The seeds the queue added to ``grid``'s points, for `senet queue` to keep when it
    queues the grid again: slots beyond the first min seeds of points still in the grid,
    below its max, with their keys as the grid now resolves them."""
    if grid.adaptive is None:
        return {}
    from senet.settings.identity import key_of, resolved_settings

    base = set(grid.seeds)
    points = {p.id: p for p in grid.points}
    resolved: dict[str, dict[str, Any]] = {}
    kept = {}
    for point_id, seed, _ in queue.attrs().get(A_SLOTS, []):
        seed = int(seed)
        if point_id not in points or seed in base or seed >= grid.adaptive.max:
            continue
        if point_id not in resolved:
            resolved[point_id] = resolved_settings(points[point_id].settings)
        kept[(point_id, seed)] = key_of(resolved[point_id], seed)
    return kept


def refill(queue: GridQueue, storage_url: str | None) -> list[tuple[str, int]]:
    """Before a worker claims: add a seed to each point an open claim asks one of, under
    the storage-wide queue lock. Returns the (point, seed) slots added."""
    attrs = queue.attrs()
    design = design_of(attrs)
    if design is None or not points_to_extend(design, attrs.get(A_CLAIMS, []),
                                              board_of(queue, attrs)):
        return []
    with queue_lock(storage_url):
        attrs = queue.attrs()  # again: another worker may have added them meanwhile
        board = board_of(queue, attrs)
        asks = points_to_extend(design, attrs.get(A_CLAIMS, []), board)
        slots = list(attrs.get(A_SLOTS, []))
        added = []
        for point_id, why in asks.items():
            used = board[point_id].used
            seed = next(s for s in range(len(used) + 1) if s not in used)
            _add_seed(queue, attrs[A_POINTS][point_id], point_id, seed, slots)
            added.append((point_id, seed))
            print(f"[{worker_name()}] {queue.name}: seed {seed} added to "
                  f"{attrs[A_POINTS][point_id]['label']!r}: undecided "
                  f"{'; '.join(repr(w) for w in why)}", flush=True)
    if added:
        _reopen_parent(attrs)
    return added


def _add_seed(queue: GridQueue, point: Mapping[str, Any], point_id: str, seed: int,
              slots: list[Any]) -> None:
    """Record the slot (appended to ``slots``, the grid's A_SLOTS), then queue its ticket
    unless its training key is covered in any grid of the storage."""
    from senet.settings.identity import training_key

    key = training_key(point["settings"], seed)
    slots.append([point_id, seed, key])
    queue.set_attr(A_SLOTS, slots)
    covered = any(t.state.name in ("COMPLETE", "WAITING", "RUNNING")
                  for t in queue._key_tickets(key))
    if not covered:
        queue.enqueue(point_id, seed, point["label"], point["settings"], key=key)


def _reopen_parent(attrs: Mapping[str, Any]) -> None:
    """The grid's parent run was closed when its queue drained; it has work again."""
    from senet.tracking import store as tracking

    try:
        tracking.set_parent_status(attrs[A_TRACKING_URI], attrs[A_PARENT_RUN], "RUNNING")
    except Exception:  # noqa: BLE001 - cosmetic: the seeds are queued either way
        pass
