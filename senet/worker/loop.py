"""The worker loop behind `senet work`: claim a ticket, train it, report, repeat.

Every pass first reaps tickets of lost workers (stale heartbeat), then claims the
lowest-numbered WAITING ticket. While a point trains, a thread keeps its heartbeat
fresh; if the ticket is taken away (reaped), training is asked to stop. A worker
leaves when nothing is queued and nothing is running anywhere in its grids: while
other workers still run points it waits, so it can take over one whose worker dies.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from senet.errors import (
    Fenced,
    SenetError,
    TicketFinished,
    TrainingFailed,
    TrainingStopped,
    one_line,
)
from senet.progress import format_duration
from senet.queue import adaptive
from senet.queue import search as searches
from senet.queue import tickets as q
from senet.queue.storage import open_storage
from senet.queue.store import TicketStore
from senet.tracking import store as tracking
from senet.worker.claim import Claim
from senet.worker.outage import Outage, is_outage
from senet.worker.processes import process_context

TrainFn = Callable[..., dict[str, Any]]


@dataclass
class WorkerConfig:
    grids: list[str] | None = None  # None: every grid in the storage
    storage: str | None = None
    tracking_uri: str | None = None  # None: the URI `senet queue` recorded for the grid
    device: str = "auto"
    max_runs: int | None = None
    runs_dir: str = "runs"
    data_root: str | None = None
    heartbeat_s: float = field(default_factory=q.heartbeat_interval)
    grace_s: float = field(default_factory=q.grace_period)
    cpu_threads: int | None = None  # torch threads when several CPU workers share a host
    pack: int = 1  # seeds of one point trained together as one packed model (--pack)
    compile: bool | None = None  # None: each training's own choice (--no-compile: False)

    @property
    def poll_s(self) -> float:
        return min(2.0, self.heartbeat_s)


class Heartbeat:
    """Keeps a claimed ticket's heartbeat fresh from a thread, independent of how long
    a training step takes, and notices when the ticket was taken away."""

    def __init__(self, queue: q.GridQueue, trial_id: int, interval: float,
                 outage: Outage | None = None) -> None:
        self.queue = queue
        self.trial_id = trial_id
        self.interval = interval
        self.outage = outage or Outage(lambda m: print(f"senet work: {m}", file=sys.stderr,
                                                       flush=True))
        self.lost = False
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="senet-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.queue.beat(self.trial_id)
                # RDB attr writes do not check the state under a lock: read it back.
                if self.queue.ticket(self.trial_id).state.is_finished():
                    self.lost = True
            except TicketFinished:
                self.lost = True
            except SenetError as exc:  # a damaged queue: no use beating; the worker says why
                print(f"senet work: heartbeat stopped: {exc}", file=sys.stderr, flush=True)
                return
            except Exception as exc:  # noqa: BLE001 - a storage hiccup; the grace covers it
                self.outage.failed("queue storage", exc, bounded=False)  # says so once
                continue
            self.outage.over("queue storage")
            if self.lost:
                return


def progress_line(queue: q.GridQueue) -> str:
    tickets = queue.tickets()
    c = queue.counts(tickets)
    eta = queue.eta_seconds(tickets, idle_workers=1)  # this worker takes the next one
    return (f"{queue.name}: {c.done}/{c.total} points done, {c.left} left "
            f"({c.running} running, {c.failed} failed"
            f"{f', {c.pruned} pruned' if c.pruned else ''}), ETA {format_duration(eta)}")


def run_folder(runs_dir: str | Path, grid: str, point: str, seed: int) -> Path:
    """The folder of a ticket queued before training keys: per (grid, point, seed)."""
    return Path(runs_dir) / grid / point / f"seed{seed}"


def key_folder(runs_dir: str | Path, model: str, key: str) -> Path:
    """runs/<model>-<key>: one folder per training, whichever grid's ticket trains it, so
    a requeued point (from any grid) finds its checkpoint."""
    return Path(runs_dir) / f"{model}-{key}"


def ticket_folder(runs_dir: str | Path, grid: str, ticket: q.Ticket) -> Path:
    key = ticket.attrs.get(tracking.T_KEY)
    if key:
        return key_folder(runs_dir, ticket.settings.get("model", "model"), str(key))
    return run_folder(runs_dir, grid, ticket.point, ticket.seed)


def _attempt_log(folder: Path, event: dict[str, Any]) -> None:
    """One JSON line per training start/end: an audit trail of who trained what."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "attempts.jsonl", "a") as fh:
        fh.write(json.dumps({"time": time.time(), "worker": q.worker_name(), **event}) + "\n")


class Worker:
    def __init__(self, cfg: WorkerConfig, train_fn: TrainFn | None = None) -> None:
        self.cfg = cfg
        self.train_fn = train_fn
        # One store for every pass, so it caches what never changes (trial ids).
        self.storage = TicketStore(open_storage(cfg.storage, create=False))
        self.stop_requested = False
        self.runs = 0
        self.failed: list[str] = []  # the grid of each point that failed in this worker
        self._skipped: set[str] = set()
        self._checked: set[str] = set()
        self.outage = Outage(self.say, poll_s=cfg.poll_s)  # a store down for seconds

    # -- the loop

    def run(self) -> int:
        """Train until the grids are drained (or --max-runs); returns trainings run."""
        self._check_grids_exist()
        why = "the queue is empty"
        while not self.stop_requested:
            try:
                queues = self._queues()
                self._reap(queues)
                claimed = self._claim(queues)
                busy = claimed is None and any(queue.counts().running for queue in queues)
                self.outage.over("queue storage")
            except SenetError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the database restarting
                if not is_outage(exc):
                    raise SenetError(f"queue storage failed: {one_line(exc)}") from None
                self.outage.failed("queue storage", exc)  # one line; bounded
                time.sleep(self.cfg.poll_s)
                continue
            if claimed is not None:
                queue, tickets = claimed
                self._train(queue, tickets)
                self.runs += len(tickets)
                self.say(progress_line(queue))
                if self.cfg.max_runs is not None and self.runs >= self.cfg.max_runs:
                    why = f"--max-runs {self.cfg.max_runs} reached"
                    break
                continue
            if not busy:
                break
            time.sleep(self.cfg.poll_s)
        if self.stop_requested:
            why = "stopped on request"
        self.say(f"leaving: {why}; {self.runs} point(s) worked on")
        return self.runs

    def _reap(self, queues: list[q.GridQueue]) -> None:
        for queue in queues:
            for t in queue.reap(self.cfg.grace_s):
                self.say(f"{queue.name}: took back {t.label!r} seed {t.seed} "
                         f"(ticket #{t.number}): {t.attrs.get(tracking.T_WORKER, '?')} was lost")

    def say(self, message: str) -> None:
        print(f"[{q.worker_name()}] {message}", flush=True)

    def _check_grids_exist(self) -> None:
        for name in self.cfg.grids or []:
            q.GridQueue.open(self.storage, name)

    def _queues(self) -> list[q.GridQueue]:
        if self.cfg.grids is None:
            queues = q.GridQueue.all(self.storage)
        else:
            queues = [q.GridQueue.open(self.storage, name) for name in self.cfg.grids]
        ready = []
        for queue in queues:
            attrs = queue.attrs()
            if tracking.A_PARENT_RUN in attrs:
                uri = self._tracking_uri(attrs)
                if uri not in self._checked:  # fail before claiming, not point by point
                    tracking.check_tracking(uri)
                    self._checked.add(uri)
                ready.append(queue)
            elif queue.name not in self._skipped:
                self._skipped.add(queue.name)
                self.say(f"{queue.name}: skipped, its MLflow experiment is not set up yet; "
                         f"run `senet queue {queue.name}` again")
        return ready

    def _claim(self, queues: list[q.GridQueue]) -> tuple[q.GridQueue, list[q.Ticket]] | None:
        k = 1 if self.train_fn is not None else self.cfg.pack  # a test's train_fn trains one
        for queue in queues:
            searches.refill(queue)  # a search asks its sampler for the next trial here
            adaptive.refill(queue, self.cfg.storage)  # a seed where a claim is undecided
            tickets = queue.claim(self.cfg.grace_s, k, joins=self._joins(queue), log=self.say)
            if tickets:
                return queue, tickets
        return None

    def _joins(self, queue: q.GridQueue) -> Callable[[list[q.Ticket], q.Ticket], bool]:
        """Whether a waiting ticket may train in one packed model with the claimed ones:
        the same architecture, data and protocol, differing only in seed and the SE
        options that keep every tensor's shape (senet.engine.pack_rules)."""
        from senet.engine.pack_rules import key_of_config, refusal

        attrs = queue.attrs()
        keys: dict[int, Any] = {}

        def key(ticket: q.Ticket) -> Any:
            if ticket.trial_id not in keys:
                keys[ticket.trial_id] = key_of_config(self.train_config(queue, ticket, attrs),
                                                      f"{ticket.label!r} seed {ticket.seed}")
            return keys[ticket.trial_id]

        def joins(mine: list[q.Ticket], ticket: q.Ticket) -> bool:
            return refusal([key(t) for t in (*mine, ticket)]) is None

        return joins

    # -- one training, or K seeds of one point packed

    def train_config(self, queue: q.GridQueue, ticket: q.Ticket, attrs: dict[str, Any]):
        from senet.settings.config import TrainConfig, split_settings

        return TrainConfig(
            **split_settings(ticket.settings),
            seed=ticket.seed,
            device=self.cfg.device,
            data_root=self.cfg.data_root,
            out=str(ticket_folder(self.cfg.runs_dir, queue.name, ticket)),
            tracking_uri=self._tracking_uri(attrs),
            experiment=attrs[tracking.A_EXPERIMENT],
            resume=True,
            tags={
                tracking.A_GRID: queue.name,
                tracking.T_POINT: ticket.point,
                tracking.T_SEED: str(ticket.seed),
                tracking.T_LABEL: ticket.label,
                # Every table holding this training finds the run by its key.
                **({tracking.T_KEY: str(ticket.attrs[tracking.T_KEY])}
                   if ticket.attrs.get(tracking.T_KEY) else {}),
            },
            run_name=f"{ticket.label} · s{ticket.seed}",
            **({"compile": self.cfg.compile} if self.cfg.compile is not None else {}),
        )

    def _tracking_uri(self, attrs: dict[str, Any]) -> str:
        recorded = tracking.password_from_env(attrs.get(tracking.A_TRACKING_URI))
        return self.cfg.tracking_uri or recorded or tracking.DEFAULT_TRACKING_URI

    def _train(self, queue: q.GridQueue, tickets: list[q.Ticket]) -> None:
        """Train the claimed tickets (seeds of one point) in one loop, then settle each
        ticket on its own outcome."""
        import contextlib

        attrs = queue.attrs()
        cfgs = [self.train_config(queue, t, attrs) for t in tickets]
        # A search's ticket tags its run and feeds the pruner after every epoch.
        on_epoch = [searches.training_hooks(queue, t, cfg).get("on_epoch")
                    for t, cfg in zip(tickets, cfgs, strict=True)]
        seeds = ", ".join(str(t.seed) for t in tickets)
        if len(tickets) > 1:
            points = ", ".join(f"{t.label!r} s{t.seed}" for t in tickets)
            self.say(f"{queue.name}: training {points} packed (tickets "
                     f"{', '.join('#' + str(t.number) for t in tickets)})")
        claims = []
        for t, cfg in zip(tickets, cfgs, strict=True):
            folder = Path(cfg.out)
            resumed = (folder / "checkpoint.pt").exists()
            if len(tickets) == 1:
                self.say(f"{queue.name}: training {t.label!r} seed {t.seed} (ticket "
                         f"#{t.number}{', resuming' if resumed else ''}) in {folder}")
            _attempt_log(folder, {"event": "start", "grid": queue.name, "ticket": t.number,
                                  "point": t.point, "seed": t.seed, "key": t.key,
                                  "checkpoint": resumed,
                                  **({"packed": seeds} if len(tickets) > 1 else {})})
            claims.append(Claim.take(folder, t.trial_id))
        started = time.time()
        beats = [Heartbeat(queue, t.trial_id, self.cfg.heartbeat_s, self.outage) for t in tickets]
        outcomes: list[Any]
        with contextlib.ExitStack() as stack:
            for beat in beats:
                stack.enter_context(beat)
            owns = [lambda b=b, c=c: not b.lost and c.held()
                    for b, c in zip(beats, claims, strict=True)]
            stop = lambda: self.stop_requested or any(b.lost for b in beats)  # noqa: E731
            try:
                outcomes = self._run_trainings(queue, tickets, cfgs, on_epoch, owns, stop)
            except KeyboardInterrupt:
                for t, cfg in zip(tickets, cfgs, strict=True):
                    self._give_back(queue, t, "interrupted (Ctrl-C)")
                    _attempt_log(Path(cfg.out), {"event": "end", "ticket": t.number,
                                                 "outcome": "interrupted"})
                raise
            except Exception as exc:  # noqa: BLE001 - the whole pack failed: each ticket fails
                outcomes = [exc] * len(tickets)
        seconds = time.time() - started
        for t, cfg, beat, claim, outcome in zip(tickets, cfgs, beats, claims, outcomes,
                                                strict=True):
            result = self._settle(queue, t, cfg, attrs, outcome, beat.lost or not claim.held(),
                                  seconds)
            _attempt_log(Path(cfg.out), {"event": "end", "ticket": t.number, **result})
            searches.after_training(queue, t, result)
        self._close_parent_if_drained(queue, attrs)

    def _run_trainings(self, queue: q.GridQueue, tickets: list[q.Ticket], cfgs: list[Any],
                       on_epoch: list[Any], owns: list[Any], stop: Callable[[], bool]
                       ) -> list[Any]:
        """One outcome per ticket: a summary, or the exception that ended that training."""
        prefixes = [f"[{queue.name} {t.label} s{t.seed}]" for t in tickets]
        if self.train_fn is not None:  # a caller's own training function (tests, tools)
            hooks = {"on_epoch": on_epoch[0]} if on_epoch[0] else {}
            try:
                return [self.train_fn(cfgs[0], should_stop=stop,
                                      log=lambda msg: print(f"{prefixes[0]} {msg}", flush=True),
                                      **hooks)]
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - settled as that ticket's outcome
                return [exc]
        from senet.engine.train import train_copies

        return train_copies(cfgs, should_stop=stop, on_epoch=on_epoch, owns=owns,
                            log=lambda k, msg: print(f"{prefixes[k]} {msg}", flush=True))

    def _settle(self, queue: q.GridQueue, ticket: q.Ticket, cfg: Any, attrs: dict[str, Any],
                outcome: Any, lost: bool, seconds: float) -> dict[str, Any]:
        """Close one ticket on its training's outcome: done, pruned, lost to another worker,
        given back (stopped with its pack or on request), or failed."""
        lost = lost or isinstance(outcome, Fenced)
        try:
            if isinstance(outcome, dict):
                return self._report(queue, ticket, outcome, seconds)
            if isinstance(outcome, searches.TrialPruned):
                return searches.pruned(queue, ticket, outcome)
            if isinstance(outcome, TrainingStopped) and not lost and not self.stop_requested:
                # Another seed of the pack was taken back: this one is fine, so it goes
                # back to the queue and resumes from its checkpoint.
                self._give_back(queue, ticket, "stopped with its pack (another seed was lost)")
                return {"outcome": "interrupted"}
            raise outcome if isinstance(outcome, BaseException) else SenetError(
                "the training returned nothing for this seed")
        except Exception as exc:  # noqa: BLE001 - one bad point must not stop the grid
            return self._failed(queue, ticket, exc, lost, cfg, attrs)

    def _report(
        self, queue: q.GridQueue, ticket: q.Ticket, summary: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        value = summary.get("final_val_top1_err")
        if not isinstance(value, int | float):
            raise SenetError(f"training returned no final_val_top1_err (got {value!r})")
        attrs = {tracking.T_RUN_ID: summary.get("mlflow_run_id"),
                 tracking.T_SECONDS: round(seconds, 1)}
        if self.outage.call("queue storage", queue.complete, ticket.trial_id, float(value), attrs):
            self.say(f"{queue.name}: {ticket.label!r} seed {ticket.seed}: "
                     f"val top-1 error {value:.2f}% in {format_duration(seconds)}")
            return {"outcome": "done", "value": value}
        # Reaped while finishing (e.g. a long stall): the work is done, so hand the result
        # to the replacement ticket instead of letting someone train the point again.
        for other in queue.waiting():
            if other.key == ticket.key and queue.try_claim(other, self.cfg.grace_s):
                queue.complete(other.trial_id, float(value), attrs)
                return {"outcome": "done", "value": value, "via_ticket": other.number}
        return {"outcome": "done-after-reap", "value": value}

    def _failed(
        self,
        queue: q.GridQueue,
        ticket: q.Ticket,
        exc: Exception,
        lost: bool,
        cfg: Any,
        attrs: dict[str, Any],
    ) -> dict[str, Any]:
        if lost:
            self.say(f"{queue.name}: {ticket.label!r} seed {ticket.seed}: stopped, its "
                     "ticket was given to another worker")
            return {"outcome": "lost"}
        if self.stop_requested:
            self._give_back(queue, ticket, "interrupted (worker stopped)")
            return {"outcome": "interrupted"}
        if is_outage(exc):  # a store down for seconds: wait, then resume from the checkpoint
            what = "MLflow tracking store" if "MLflow" in str(exc) else "queue storage"
            self.outage.wait_for(what, lambda: (tracking.check_tracking(cfg.tracking_uri),
                                                queue.attrs()), exc)
            self._give_back(queue, ticket, f"its {what} was unreachable for a while")
            return {"outcome": "interrupted"}
        if isinstance(exc, SenetError):
            reason = str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        reason = " ".join(reason.split())[:500]
        self.outage.call("queue storage", queue.fail, ticket.trial_id, reason)
        self.failed.append(queue.name)
        if not isinstance(exc, TrainingFailed):
            self._close_orphan_runs(cfg, attrs)
        self.say(f"{queue.name}: {ticket.label!r} seed {ticket.seed} FAILED: {reason}")
        return {"outcome": "failed", "reason": reason}

    def _give_back(self, queue: q.GridQueue, ticket: q.Ticket, reason: str) -> None:
        if queue.fail(ticket.trial_id, reason):
            queue.requeue(ticket, reason)
            self.say(f"{queue.name}: {ticket.label!r} seed {ticket.seed} put back in the queue")

    def _close_orphan_runs(self, cfg: Any, attrs: dict[str, Any]) -> None:
        """A crash outside the training loop can leave the point's MLflow run RUNNING."""
        try:
            tracking.close_orphan_runs(cfg.tracking_uri, attrs[tracking.A_EXPERIMENT_ID], cfg.tags)
        except Exception as exc:  # noqa: BLE001 - best effort; the failure is already recorded
            self.say(f"could not close the MLflow run: {one_line(exc)}")

    def _close_parent_if_drained(self, queue: q.GridQueue, attrs: dict[str, Any]) -> None:
        if queue.counts().left:
            return
        try:
            parent = attrs[tracking.A_PARENT_RUN]
            tracking.set_parent_status(self._tracking_uri(attrs), parent, "FINISHED")
        except Exception as exc:  # noqa: BLE001
            self.say(f"{queue.name}: could not close the grid's parent run: {one_line(exc)}")


# ---------------------------------------------------------------------------
# Entry points


def run_worker(cfg: WorkerConfig, train_fn: TrainFn | None = None) -> list[str]:
    """One worker in this process; SIGTERM lets the current point stop cleanly and
    puts it back in the queue (its checkpoint is kept). Returns the grid of each point
    that failed."""
    if cfg.cpu_threads:
        import torch

        torch.set_num_threads(cfg.cpu_threads)
    worker = Worker(cfg, train_fn)

    def _on_term(signum: int, _frame: Any) -> None:
        worker.stop_requested = True
        worker.say(f"signal {signum}: stopping after the current step")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_term)
    worker.run()
    return worker.failed


def _child(cfg: WorkerConfig, report: Any, environ: dict[str, str]) -> None:
    # A forked worker has the fork server's environment, from when the server started;
    # take the parent's as it is now (a variable set since then must reach the worker).
    os.environ.clear()
    os.environ.update(environ)
    try:
        report.put(run_worker(cfg))
    except SenetError as exc:
        print(f"senet work [{cfg.device}]: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_devices(cfg: WorkerConfig, devices: list[str]) -> tuple[int, list[str]]:
    """One worker process per device; returns the worst exit code and the grid of each
    point that failed."""
    n_cpu = sum(d == "cpu" for d in devices)
    threads = max(1, (os.cpu_count() or 1) // n_cpu) if n_cpu else None
    ctx = process_context()
    procs = []
    report = ctx.SimpleQueue()
    for device in devices:
        child_cfg = replace(cfg, device=device, cpu_threads=threads if device == "cpu" else None)
        proc = ctx.Process(target=_child, args=(child_cfg, report, dict(os.environ)),
                           name=f"senet-work-{device}")
        proc.start()
        procs.append(proc)

    def _forward(signum: int, _frame: Any) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, _forward)
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        _forward(signal.SIGINT, None)  # children got Ctrl-C too; make sure they stop
        for proc in procs:
            proc.join()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    codes = [proc.exitcode or 0 for proc in procs]
    failed = []
    while not report.empty():
        failed += report.get()
    return max(codes, key=abs), failed
