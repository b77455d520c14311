"""senet status: how far each queued grid is, and why points failed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from senet.commands.common import add_grid_filter, add_stores

HELP = "show done / running / failed / queued points per grid, with an ETA"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_filter(p)
    add_stores(p, "MLflow tracking URI; accepted so that scripts can pass the same flags to "
                  "queue, work and status (the status itself comes from the queue storage)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: grid -> done, running, failed, queued, ...")


def run(args: argparse.Namespace) -> int:
    import optuna

    from senet.commands.common import queue_name
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage, resolve_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_storage(args.storage)
    if not args.grid and "://" not in url and not Path(url).is_file():
        queues = []  # nothing queued here yet: an empty report, not an error
    else:
        storage = open_storage(url, create=False)
        if args.grid:
            queues = [q.GridQueue.open(storage, queue_name(args.grid))]
        else:
            queues = sorted(q.GridQueue.all(storage), key=lambda g: g.name)
    report = {}
    attrs = {}
    # Only for tickets that recorded no grace at their claim (queued by an older senet):
    # every other ticket is reaped by the grace of the worker that holds it.
    grace = q.grace_period()
    for queue in queues:
        queue.reap(grace)  # a dead worker's point shows as queued again, not running
        report[queue.name] = _grid_report(queue)
        attrs[queue.name] = queue.attrs()
    overall = None
    if len(queues) > 1 and not args.grid:
        overall, n_slots = q.overall_counts(queues[0].store)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not report:
        print("no grids queued in this storage; add some with `senet queue GRID`")
        return 0
    _print_table(report)
    if overall is not None:
        print(f"all grids: {overall.total} unique trainings for {n_slots} grid slots: "
              f"{overall.done} done, {overall.running} running, {overall.failed} failed, "
              f"{f'{overall.pruned} pruned, ' if overall.pruned else ''}"
              f"{overall.queued} queued (a training shared by grids counts once)")
    failed = [(name, attrs[name]) for name, r in report.items() if r["failures"]]
    if failed:
        from senet.commands.common import retry_command

        print(f"  (queue them again with `{retry_command(failed, args.storage)}`)")
    return 0


def _grid_report(queue) -> dict:
    from senet.queue import tickets as q
    from senet.tracking.store import T_WORKER

    tickets = queue.related_tickets()  # a shared training counts in every grid holding it
    counts = queue.counts(tickets)
    failures = []
    running = []
    for (point, seed), group in sorted(queue.slots(tickets).items()):
        state = q.reported_state(group)
        last = max(group, key=lambda t: t.number)
        if state == "failed":
            failures.append({"point": point, "label": last.label, "seed": seed,
                             "reason": last.reason or "unknown"})
        elif state == "running":
            live = next(t for t in group if t.state.name == "RUNNING")
            running.append({"point": point, "label": live.label, "seed": seed,
                            "worker": live.attrs.get(T_WORKER, "?")})
    eta = queue.eta_seconds(tickets)
    return {
        "done": counts.done,
        "running": counts.running,
        "failed": counts.failed,
        "pruned": counts.pruned,  # a search's trials stopped early: nothing to retry
        "queued": counts.queued,
        "total": counts.total,
        "eta_s": None if eta is None else round(eta, 1),
        "failures": failures,
        "running_points": running,
    }


def _print_table(report: dict) -> None:
    from senet.progress import format_duration

    width = max(len("grid"), *(len(name) for name in report))
    print(f"{'grid':<{width}}  {'done':>5} {'running':>8} {'failed':>7} {'pruned':>7} "
          f"{'queued':>7} {'total':>6}  ETA")
    for name, r in report.items():
        eta = "-" if r["running"] + r["queued"] == 0 else format_duration(r["eta_s"])
        print(f"{name:<{width}}  {r['done']:>5} {r['running']:>8} {r['failed']:>7} "
              f"{r['pruned']:>7} {r['queued']:>7} {r['total']:>6}  {eta}")
    for name, r in report.items():
        for f in r["failures"]:
            print(f"  {name}: FAILED {f['label']!r} seed {f['seed']}: {f['reason']}")
