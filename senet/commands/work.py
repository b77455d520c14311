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
    p.add_argument("--per-gpu", metavar="K",
                   help="K workers on each listed GPU (default on CUDA: as many as fit, from "
                        "the first grid's measured peak memory and the GPU's free memory; "
                        "'auto' asks for that explicitly); CUDA only")
    p.add_argument("--pack", metavar="K",
                   help="train up to K seeds of one grid point in one process as one packed "
                        "model (grouped convolutions); each seed keeps its own run, "
                        "checkpoint and result (default on CUDA: as many as fit, measured; "
                        "on a CPU: 1, no packing)")
    p.add_argument("--no-compile", dest="compile", action="store_false", default=None,
                   help="never torch.compile (by default ImageNet-size models are compiled "
                        "on CUDA, with Inductor's cache shared by every worker)")
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

    from senet.commands.common import queue_name, retry_command
    from senet.errors import SenetError
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage
    from senet.tracking.store import absolute_tracking_uri, check_tracking
    from senet.urls import with_driver, without_password
    from senet.worker import devices as dev
    from senet.worker.loop import WorkerConfig, run_devices, run_worker
    from senet.worker.processes import start_worker_server

    if args.grid and args.all:
        raise SenetError("give either a GRID or --all, not both")
    if args.max_runs is not None and args.max_runs < 1:
        raise SenetError(f"--max-runs {args.max_runs}: expected N >= 1")
    for name in ("heartbeat", "grace"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SenetError(f"--{name} {value}: expected seconds > 0")
    pack = dev.parse_pack(args.pack)
    gpus = dev.cuda_count()
    devices = dev.parse_devices(args.devices) if args.devices else ["auto"]
    dev.check_devices(devices, args.devices, gpus)
    if len(devices) > 1 or any(d.startswith("cuda") for d in devices):
        start_worker_server()  # its imports overlap with the checks below
    per_gpu = dev.parse_per_gpu(args.per_gpu, gpus)
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
        pack=pack or 1,
        compile=args.compile,
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
    if gpus and any(d.startswith("cuda") or d == "auto" for d in devices):
        devices = dev.cuda_devices(devices, gpus)
        if per_gpu is None or pack is None:  # the defaults: as many as fit, measured
            found = dev.measure(storage, cfg.grids, devices[0])
            if found is not None:
                share = dev.choose_share(*found, per_gpu=per_gpu, pack=pack)
                per_gpu, cfg.pack = share.per_gpu, share.pack
                print(share.line(), flush=True)
        devices = dev.expand_per_gpu(devices, per_gpu or 1)
    if len(devices) > 1:
        code, failed = run_devices(cfg, devices)
    else:
        cfg.device = devices[0]
        code, failed = 0, run_worker(cfg)
    print_views(storage, cfg.grids)
    if failed:
        grids = [(name, q.GridQueue.open(storage, name).attrs()) for name in dict.fromkeys(failed)]
        again = ["senet", "work", *([args.grid] if args.grid else []),
                 *(["--storage", without_password(args.storage)] if args.storage else [])]
        print(f"senet work: {len(failed)} point(s) failed; retry them with: "
              f"{retry_command(grids, args.storage)} && {shlex.join(again)}", flush=True)
        return code or 1
    return code


def print_views(storage, names: list[str] | None) -> None:
    """Where to see the results: each worked grid's saved MLflow view, from what `senet
    queue` recorded (no MLflow import here)."""
    from senet.queue import tickets as q
    from senet.tracking.store import A_EXPERIMENT_ID, A_TRACKING_URI
    from senet.tracking.views import view_lines

    queues = [q.GridQueue.open(storage, n) for n in names] if names else q.GridQueue.all(storage)
    for queue in sorted(queues, key=lambda g: g.name):
        attrs = queue.attrs()
        if attrs.get(A_TRACKING_URI) and attrs.get(A_EXPERIMENT_ID):
            print(f"{queue.name}:", flush=True)
            print("\n".join(view_lines(attrs[A_TRACKING_URI], attrs[A_EXPERIMENT_ID])),
                  flush=True)
