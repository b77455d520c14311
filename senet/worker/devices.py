"""Which devices a `senet work` gets, and how its trainings share each GPU.

On CUDA the defaults are measured, not guessed: one child process measures the peak
memory of the first grid's model at its batch size (``senet.worker.gpu_share``) and the
GPU's free memory. Seeds of one point then train packed, as many as fit (packing four
SE-ResNet-110 seeds ran 2.5x faster on an H200 than four processes of one seed each), and
the workers per GPU follow from the memory the pack needs. Flags override each choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from senet.errors import SenetError

MAX_PACK = 8  # copies per packed model by default: enough for every shipped grid's seeds
# Workers per GPU when each trains a pack: a second process overlaps one pack's host work
# (data, bookkeeping) with the other's kernels; more only queue for the same GPU.
MAX_PACKED_WORKERS = 2


def parse_devices(spec: str) -> list[str]:
    """`0,1` -> cuda:0, cuda:1; `cpu,cpu` -> two CPU workers; `auto` allowed."""
    devices = []
    for item in (s.strip() for s in spec.split(",")):
        if item.isdigit():
            devices.append(f"cuda:{item}")
        elif item in ("cpu", "auto", "cuda") or item.startswith("cuda:"):
            devices.append(item)
        else:
            raise SenetError(f"--devices {spec!r}: expected a comma list of GPU indices or cpu")
    if not devices:
        raise SenetError("--devices: empty list")
    return devices


def cuda_index(device: str) -> int:
    """The GPU index of a worker's device string: ``cuda`` and ``auto`` are GPU 0.

    CUDA's per-device calls (``reset_peak_memory_stats``, ``mem_get_info``) need a real
    index: given ``cuda`` before any CUDA call in a fresh process they failed with
    "Invalid device argument" (the crash of `senet work` on its defaults)."""
    if device in ("cuda", "auto"):
        return 0
    head, _, index = device.partition(":")
    if head != "cuda" or not index.isdigit():
        raise SenetError(f"device {device!r}: expected cuda, cuda:N or a GPU index")
    return int(index)


def check_devices(devices: list[str], spec: str | None, have: int) -> None:
    """Refuse GPUs this machine does not have (``have`` of them), before any worker starts."""
    cuda = [d for d in devices if d.startswith("cuda")]
    if not cuda:
        return
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
    if value is not None and gpus == 0:
        raise SenetError(f"--per-gpu {value}: this machine has no CUDA GPU; leave --per-gpu "
                         "out (several CPU workers: --devices cpu,cpu)")
    if value is None or value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise SenetError(f"--per-gpu {value!r}: expected an integer >= 1 (workers per GPU) "
                         "or auto")
    return int(value)


def parse_pack(value: str | None) -> int | None:
    """--pack as an int >= 1; None for the default (measured on CUDA, 1 on a CPU)."""
    if value is None or value == "auto":
        return None
    from senet.engine.packed import check_pack_size

    return check_pack_size(value, "--pack")


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


@dataclass(frozen=True)
class Share:
    """How one GPU is shared: workers on it, and copies packed in each worker's model."""

    per_gpu: int
    pack: int
    measured: bool

    def line(self) -> str:
        how = "measured" if self.measured else "as given"
        return (f"senet work: {self.per_gpu} worker(s) per GPU, up to {self.pack} seed(s) "
                "packed per model (" + how + "; --per-gpu K and --pack K choose)")


def choose_share(peak_bytes: int, free_bytes: int, seeds: int, *, per_gpu: int | None,
                 pack: int | None) -> Share:
    """Pack the point's seeds (``seeds`` of them, at most MAX_PACK) as far as memory
    allows, then as many workers as the packs leave room for. ``per_gpu`` or ``pack``
    given by the user is kept as it is."""
    from senet.worker.gpu_share import per_gpu_default

    if pack is None:
        pack = max(1, min(seeds, MAX_PACK, per_gpu_default(peak_bytes, free_bytes,
                                                           cap=MAX_PACK)))
    if per_gpu is None:
        per_gpu = per_gpu_default(peak_bytes * pack, free_bytes)
        if pack > 1:
            per_gpu = min(per_gpu, MAX_PACKED_WORKERS)
    return Share(per_gpu, pack, measured=True)


def seeds_per_point(tickets: list[Any]) -> int:
    """The most seeds any point of these tickets has."""
    seeds: dict[str, set[int]] = {}
    for t in tickets:
        seeds.setdefault(t.point, set()).add(t.seed)
    return max((len(s) for s in seeds.values()), default=1)


def measure(storage: Any, grids: list[str] | None, device: str) -> tuple[int, int, int] | None:
    """(peak bytes of the first grid's model at its batch size, free bytes of the GPU,
    seeds per point), measured in a child process so this one holds no CUDA context;
    None when nothing is queued."""
    from senet.queue import tickets as q
    from senet.worker.processes import process_context

    queues = ([q.GridQueue.open(storage, name) for name in grids] if grids
              else q.GridQueue.all(storage))
    tickets = [t for queue in queues for t in queue.tickets()]
    if not tickets:
        return None
    with process_context().Pool(1) as pool:
        peak, free = pool.apply(_measure, (tickets[0].settings, cuda_index(device)))
    return peak, free, seeds_per_point(tickets)


def _measure(settings: dict, index: int) -> tuple[int, int]:
    import torch

    from senet.settings.config import TrainConfig, split_settings
    from senet.settings.resolve import resolve_run
    from senet.worker.gpu_share import free_bytes, measure_peak_bytes

    cfg = TrainConfig(**split_settings(settings))
    plan = resolve_run(cfg)
    size = 224 if cfg.dataset == "imagenet" else 32  # CIFAR-sized otherwise
    dev = torch.device("cuda", index)
    peak = measure_peak_bytes(cfg.model, plan.batch_size, size, dev, **plan.model_options)
    return peak, free_bytes(dev)
