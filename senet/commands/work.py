"""senet work: train queued grid points until the queue is empty."""

from __future__ import annotations

import argparse
import shlex

from senet.commands.common import add_grid_filter, add_stores

HELP = "train queued grid points (many workers, on one machine or many, share one queue)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_filter(p)
    p.add_argument("--all", action="store_true",
                   help="every grid in the storage, including grids queued while this "
                        "worker runs (the default when no GRID is given)")
    add_stores(p, "MLflow tracking URI (default: the one given to `senet queue`)")
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

    from senet import queue as q
    from senet.commands.common import queue_name, retry_command
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
    devices = parse_devices(args.devices) if args.devices else ["auto"]
    check_devices(devices, args.devices)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = WorkerConfig(
        grids=[queue_name(args.grid)] if args.grid else None,  # None: all, as with --all
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
    storage = open_storage(args.storage, create=False)
    if args.tracking_uri:
        check_tracking(cfg.tracking_uri)
    if len(devices) > 1:
        code, failed = run_devices(cfg, devices)
    else:
        cfg.device = devices[0]
        code, failed = 0, run_worker(cfg)
    if failed:
        grids = [(name, q.GridQueue.open(storage, name).attrs()) for name in dict.fromkeys(failed)]
        again = ["senet", "work", *([args.grid] if args.grid else []),
                 *(["--storage", args.storage] if args.storage else [])]
        print(f"senet work: {len(failed)} point(s) failed; retry them with: "
              f"{retry_command(grids, args.storage)} && {shlex.join(again)}", flush=True)
        return code or 1
    return code


def check_devices(devices: list[str], spec: str | None) -> None:
    """Refuse GPUs this machine does not have, before any worker starts."""
    cuda = [d for d in devices if d.startswith("cuda")]
    if not cuda:
        return
    import torch

    from senet.errors import SenetError

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have == 0:
        raise SenetError(f"--devices {spec}: this machine has no CUDA GPU; "
                         "use --devices cpu (cpu,cpu for two CPU workers)")
    missing = [d for d in cuda if d != "cuda"
               and (not d.split(":")[1].isdigit() or int(d.split(":")[1]) >= have)]
    if missing:
        raise SenetError(f"--devices {spec}: no GPU {', '.join(m.split(':')[1] for m in missing)}"
                         f" here; this machine has {have} (0..{have - 1})")
