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
    p.add_argument("--pack", metavar="K", default="1",
                   help="train up to K seeds of one grid point in one process as one packed "
                        "model (grouped convolutions); each seed keeps its own run, "
                        "checkpoint and result (default 1: no packing)")
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
    from senet.queue.storage import open_storage, with_driver, without_password
    from senet.tracking.store import absolute_tracking_uri, check_tracking
    from senet.worker.loop import WorkerConfig, parse_devices, run_devices, run_worker
    from senet.worker.processes import start_worker_server

    if args.grid and args.all:
        raise SenetError("give either a GRID or --all, not both")
    if args.max_runs is not None and args.max_runs < 1:
        raise SenetError(f"--max-runs {args.max_runs}: expected N >= 1")
    for name in ("heartbeat", "grace"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SenetError(f"--{name} {value}: expected seconds > 0")
    from senet.engine.packed import check_pack_size

    pack = check_pack_size(args.pack, "--pack")
    devices = parse_devices(args.devices) if args.devices else ["auto"]
    check_devices(devices, args.devices)
    if len(devices) > 1 or any(d.startswith("cuda") for d in devices):
        start_worker_server()  # its imports overlap with the checks below
    per_gpu = parse_per_gpu(args.per_gpu, cuda_count())
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
        pack=pack,
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
    if cuda_count():
        devices = cuda_devices(devices, cuda_count())
        if per_gpu is None:  # the default: as many as fit, measured
            per_gpu = measured_per_gpu(storage, cfg.grids, devices[0], pack)
            print(f"senet work: {per_gpu} worker(s) per GPU (measured; --per-gpu K to choose)",
                  flush=True)
        devices = expand_per_gpu(devices, per_gpu)
    if len(devices) > 1:
        code, failed = run_devices(cfg, devices)
    else:
        cfg.device = devices[0]
        code, failed = 0, run_worker(cfg)
    if failed:
        grids = [(name, q.GridQueue.open(storage, name).attrs()) for name in dict.fromkeys(failed)]
        again = ["senet", "work", *([args.grid] if args.grid else []),
                 *(["--storage", without_password(args.storage)] if args.storage else [])]
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


def cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_per_gpu(value: str | None, gpus: int) -> int | None:
    """--per-gpu as an int >= 1; None for the measured default ('auto' or not given)."""
    from senet.errors import SenetError

    if value is not None and gpus == 0:
        raise SenetError(f"--per-gpu {value}: this machine has no CUDA GPU; leave --per-gpu "
                         "out (several CPU workers: --devices cpu,cpu)")
    if value is None or value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise SenetError(f"--per-gpu {value!r}: expected an integer >= 1 (workers per GPU) "
                         "or auto")
    return int(value)


def cuda_devices(devices: list[str], gpus: int) -> list[str]:
    """The worker's device list with `auto` (no --devices) as every GPU of the machine."""
    if devices == ["auto"]:
        return [f"cuda:{i}" for i in range(gpus)]
    return ["cuda:0" if d == "cuda" else d for d in devices]


def expand_per_gpu(devices: list[str], per_gpu: int) -> list[str]:
    """Each CUDA device repeated ``per_gpu`` times (one worker process each); CPU workers
    stay as listed."""
    out: list[str] = []
    for device in devices:
        out += [device] * (per_gpu if device.startswith("cuda") else 1)
    return out


def measured_per_gpu(storage, grids: list[str] | None, device: str, pack: int) -> int:
    """Workers per GPU from the first grid's model at its batch size: its peak memory is
    measured in a child process (so this one holds no CUDA context) against the GPU's
    free memory (senet.worker.gpu_share)."""
    from senet.queue import tickets as q
    from senet.worker.gpu_share import per_gpu_default
    from senet.worker.processes import process_context

    queues = ([q.GridQueue.open(storage, name) for name in grids] if grids
              else q.GridQueue.all(storage))
    tickets = [t for queue in queues for t in queue.tickets()]
    if not tickets:
        return 1
    with process_context().Pool(1) as pool:
        peak, free = pool.apply(_measure, (tickets[0].settings, device))
    return per_gpu_default(peak * pack, free)


def _measure(settings: dict, device: str) -> tuple[int, int]:
    import torch

    from senet.engine.train import make_plan
    from senet.settings.config import TrainConfig, load_preset, split_settings
    from senet.worker.gpu_share import free_bytes, measure_peak_bytes

    cfg = TrainConfig(**split_settings(settings))
    plan = make_plan(cfg, load_preset(cfg.preset))
    size = 224 if cfg.dataset == "imagenet" else 32  # CIFAR-sized otherwise
    dev = torch.device(device)
    peak = measure_peak_bytes(cfg.model, plan.batch_size, size, dev, **plan.model_options)
    return peak, free_bytes(dev)
