"""senet work: train queued grid points until the queue is empty."""

from __future__ import annotations

import argparse

HELP = "train queued grid points (many workers, on one machine or many, share one queue)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", nargs="?", metavar="GRID",
                   help="only this grid (name or .toml path); default: every queued grid")
    p.add_argument("--all", action="store_true", help="work on every grid in the storage")
    p.add_argument("--storage", help="queue storage (default ./senet-queue.journal)")
    p.add_argument("--tracking-uri",
                   help="MLflow tracking URI (default: the one given to `senet queue`)")
    p.add_argument("--devices", metavar="LIST",
                   help="one worker process per device: GPU indices (0,1,...) or cpu "
                        "(cpu,cpu for two CPU workers); default: one worker, device auto")
    p.add_argument("--max-runs", type=int, metavar="N",
                   help="stop after N trainings (per worker process)")
    p.add_argument("--runs-dir", default="runs",
                   help="folder for checkpoints, one per grid/point/seed (default runs/)")
    p.add_argument("--data-root", help="dataset folder (cifar10/100, imagenet)")
    p.add_argument("--heartbeat", type=float, metavar="S",
                   help="seconds between heartbeats (default $SENET_HEARTBEAT_S or 10)")
    p.add_argument("--grace", type=float, metavar="S",
                   help="seconds without heartbeat before a point is taken back from its "
                        "worker (default $SENET_HEARTBEAT_GRACE_S or 60)")


def run(args: argparse.Namespace) -> int:
    import optuna

    from senet.errors import SenetError
    from senet.storage import open_storage, with_driver
    from senet.tracking import absolute_tracking_uri, check_tracking
    from senet.worker import WorkerConfig, parse_devices, run_devices, run_worker

    if args.grid and args.all:
        raise SenetError("give either a GRID or --all, not both")
    if args.max_runs is not None and args.max_runs < 1:
        raise SenetError(f"--max-runs {args.max_runs}: expected N >= 1")
    for name in ("heartbeat", "grace"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SenetError(f"--{name} {value}: expected seconds > 0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = WorkerConfig(
        grids=[_grid_name(args.grid)] if args.grid else None,
        storage=args.storage,
        tracking_uri=(
            with_driver(absolute_tracking_uri(args.tracking_uri)) if args.tracking_uri else None
        ),
        max_runs=args.max_runs,
        runs_dir=args.runs_dir,
        data_root=args.data_root,
    )
    if args.heartbeat is not None:
        cfg.heartbeat_s = args.heartbeat
    if args.grace is not None:
        cfg.grace_s = args.grace
    if cfg.grace_s <= 2 * cfg.heartbeat_s:
        raise SenetError(f"grace {cfg.grace_s:g}s must exceed twice the heartbeat "
                         f"interval ({cfg.heartbeat_s:g}s), or live workers get reaped")
    # Open the storage here so a bad --storage fails once, not in every worker process.
    open_storage(args.storage, create=False)
    if args.tracking_uri:
        check_tracking(cfg.tracking_uri)
    if args.devices:
        devices = parse_devices(args.devices)
        if len(devices) > 1:
            return run_devices(cfg, devices)
        cfg.device = devices[0]
    run_worker(cfg)
    return 0


def _grid_name(spec: str) -> str:
    """A grid name as given, or the name of a grid file."""
    from senet.grid import grid_name, resolve_grid_path

    if spec.endswith(".toml"):
        return grid_name(resolve_grid_path(spec))
    return spec
