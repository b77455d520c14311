"""How many trainings fit on one GPU at once (``senet work --per-gpu``'s default).

The answer comes from a measured peak: ``measure_peak_bytes`` runs a few training steps
of the model at the run's batch size and reads the CUDA allocator's peak;
``per_gpu_default`` divides the GPU's free memory by that peak plus each process's fixed
cost (CUDA context and allocator slack), keeping a safety margin.
"""

from __future__ import annotations

import torch

from senet.errors import SenetError

# What a CUDA process costs beyond its tensors: the context (~500 MiB on recent drivers)
# plus allocator fragmentation. A conservative constant, not measured here.
PROCESS_OVERHEAD_BYTES = 768 * 2**20
MAX_PER_GPU = 8  # beyond this, workers contend for the GPU's launch queue and gain nothing


def per_gpu_default(peak_bytes: int, free_bytes: int, *, margin: float = 0.9,
                    overhead_bytes: int = PROCESS_OVERHEAD_BYTES,
                    cap: int = MAX_PER_GPU) -> int:
    """Workers per GPU: ``floor(margin * free / (peak + overhead))``, clamped to [1, cap].

    One worker always runs, even if the estimate says none fits: the run then fails on
    its own with CUDA's out-of-memory error, which names the real problem.
    """
    if peak_bytes <= 0 or free_bytes < 0:
        raise SenetError(f"per-GPU estimate: peak {peak_bytes} and free {free_bytes} bytes "
                         "must be positive; measure the model's peak first")
    fits = int(margin * free_bytes // (peak_bytes + overhead_bytes))
    return max(1, min(cap, fits))


def measure_peak_bytes(model_name: str, batch: int, image_size: int, device: torch.device,
                       *, steps: int = 3, **options) -> int:
    """Peak CUDA memory of ``steps`` bf16 training steps of ``model_name`` at ``batch``."""
    if torch.device(device).type != "cuda":
        raise SenetError("--per-gpu needs CUDA GPUs; on a CPU machine run workers without it")
    import senet
    from senet.engine.step import make_optimizer, make_train_step

    device = torch.device("cuda", torch.device(device).index or 0)
    torch.cuda.set_device(device)
    torch.empty(1, device=device)  # a context and allocator for the device, before its stats
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model = senet.build(model_name, **options).to(device, memory_format=torch.channels_last)
    classes = getattr(model, "num_classes", 1000)
    opt = make_optimizer(model.parameters(), lr=0.0, momentum=0.9, weight_decay=0.0,
                         nesterov=False, device=device, graphs=False)
    step = make_train_step(model, opt, amp_dtype=torch.bfloat16)
    x = torch.randn(batch, 3, image_size, image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    for _ in range(steps):
        step(x, y, 0.0)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del step, opt, model, x, y
    torch.cuda.empty_cache()
    return int(peak)


def free_bytes(device: torch.device) -> int:
    """The GPU's free memory now, as the driver reports it (other processes included)."""
    if torch.device(device).type != "cuda":
        raise SenetError("--per-gpu needs CUDA GPUs; on a CPU machine run workers without it")
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)
