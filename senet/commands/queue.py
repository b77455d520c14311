"""senet queue: turn grid files into queued trainings (idempotent)."""

from __future__ import annotations

import argparse

from senet.commands.common import add_stores

HELP = "queue every point x seed of one or more grids for `senet work`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grids", nargs="+", metavar="GRID",
                   help="grid name under experiments/ (e.g. cifar10/reduction, demo; a trailing "
                        ".toml is allowed) or a path to a grid .toml")
    add_stores(p, "MLflow tracking URI for the grid's runs "
                  "(default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="use seeds 0..N-1 instead of the grid file's seeds")
    p.add_argument("--retry-failed", action="store_true",
                   help="queue again the points whose trainings failed")


def run(args: argparse.Namespace) -> int:
    import optuna

    from senet import queue as q
    from senet import tracking as t
    from senet.errors import SenetError
    from senet.grid import load_grid
    from senet.storage import open_storage, with_driver

    if args.seeds is not None and args.seeds < 1:
        raise SenetError(f"--seeds {args.seeds}: expected a number of seeds >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Validate every grid before touching the queue, so a typo queues nothing.
    grids = [load_grid(spec) for spec in args.grids]
    tracking_uri = with_driver(t.absolute_tracking_uri(t.resolve_uri(args.tracking_uri)))
    t.check_tracking(tracking_uri)
    storage = open_storage(args.storage)
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    for grid in grids:
        queue, _ = q.GridQueue.open_or_create(storage, grid.name)
        # Experiment and parent run first: workers skip a grid until they exist.
        tracking = t.ensure_grid_tracking(queue, tracking_uri)
        result = q.queue_grid(storage, grid, seeds, args.retry_failed)
        if result.added or result.retried:
            t.set_parent_status(tracking_uri, tracking[t.A_PARENT_RUN], "RUNNING")
        n_seeds = len(seeds if seeds is not None else grid.seeds)
        line = (f"{grid.name}: {len(grid.points)} points x {n_seeds} seeds; "
                f"queued {result.added} new")
        if result.retried:
            line += f", {result.retried} failed ones again"
        line += f"; {result.existing} already queued, running or done"
        if result.failed_left:
            line += f"; {result.failed_left} failed (add --retry-failed to queue them again)"
        print(line)
        print(f"  MLflow experiment {tracking[t.A_EXPERIMENT]!r} "
              f"(id {tracking[t.A_EXPERIMENT_ID]}), parent run {tracking[t.A_PARENT_RUN]}")
    return 0
