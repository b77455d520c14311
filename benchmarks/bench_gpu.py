"""Training throughput per execution path, in one process, as one markdown table.

    python benchmarks/bench_gpu.py --device cuda            # the full table on a GPU
    python benchmarks/bench_gpu.py --device cpu --quick     # tiny sizes, for CI

Rows: resnet20, se_resnet20, resnet110, se_resnet110 at batch 128 (32x32) and resnet50,
se_resnet50 at batch 256 (224x224), each on the paths
  eager        the step of senet/step.py, eager
  compiled     torch.compile(model) (default mode) in the eager step
  compiled-ro  torch.compile(model, mode="reduce-overhead"): its own CUDA graphs
  graphs       the whole step captured by senet/step.py as one CUDA graph
  packed       K copies as one packed model (senet/packed.py), graphed on CUDA
  packed-grid  K different grid points as one packed model (reductions 2, 4, 8, 16, ...
               zero-padded, gates sigmoid/tanh/relu in turn); a plain model packs K seeds
  fused-se     the graphs path with each SE block compiled (senet/models/fused_se.py,
               region se); a plain model runs the graphs path, the baseline
  fused-block  the same with each SE residual unit compiled (region block)
  per-gpu      K processes on one GPU, each on the graphs path, measured together
and timm's resnet50 / seresnet50 beside ours (eager, compiled, graphs) when timm is
installed. Each row: img/s (median of timed windows; a window ends with one device sync),
the SE cost (plain img/s / SE img/s on the same path) and the peak device memory.
On CUDA the step runs under bf16 autocast with channels_last. Inputs are synthetic,
fixed tensors on the device: this measures the step, not the loader. A row that cannot
run here (a CUDA-only path on CPU) is printed with the reason in its note.

Then the input rows (``--no-input`` leaves them out): ImageNet-style JPEGs (``--input-root``
with train/, else synthetic 500x375 JPEGs written to a temporary folder) through each
stage of ``senet.data``'s input, to see where the time goes: reading the files, decoding
(PIL one by one; torchvision/nvJPEG as one batch), cropping and resizing (one kernel per
image; ``crop_resize_batch`` for the batch), and the whole loader (``StreamingData``,
``--input-workers`` workers) on the PIL and the device-decode paths.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_input, when run by path

import senet  # noqa: E402
from senet.engine.packed import pack, pack_inputs, pack_targets  # noqa: E402
from senet.engine.step import make_optimizer, make_train_step  # noqa: E402
from senet.models.fused_se import fuse_se  # noqa: E402

CIFAR = ["resnet20", "se_resnet20", "resnet110", "se_resnet110"]
IMAGENET = ["resnet50", "se_resnet50"]
TIMM = {"timm resnet50": "resnet50", "timm seresnet50": "seresnet50"}
ALL_PATHS = ["eager", "compiled", "compiled-ro", "graphs", "packed", "packed-grid",
             "fused-se", "fused-block", "per-gpu"]
CPU_PATHS = ["eager", "packed", "packed-grid", "fused-se"]
CUDA_ONLY = {"graphs": "CUDA graphs", "compiled-ro": "CUDA graphs", "per-gpu": "a GPU to share",
             "fused-se": "CUDA (Inductor on CPU builds C++ for minutes; the CPU check is "
                         "tests/test_fused_se.py)",
             "fused-block": "CUDA (as fused-se)"}
GRID_GATES = ("sigmoid", "tanh", "relu")


@dataclass
class Row:
    model: str
    shape: str
    path: str
    img_s: float | None
    peak_mib: float | None
    note: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(name: str, device: torch.device, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if name in TIMM:
        import timm

        model = timm.create_model(TIMM[name], num_classes=classes)
    else:
        model = senet.build(name, num_classes=classes)
    return model.to(device, memory_format=torch.channels_last).train()


def _batch(n: int, size: int, classes: int, device: torch.device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, classes, (n,), generator=gen).to(device)
    return x.contiguous(memory_format=torch.channels_last), y


def _time(step, x, y, device, warmup: int, steps: int, windows: int) -> float:
    """Median img/s over ``windows`` windows of ``steps`` steps, after ``warmup`` steps."""
    for _ in range(warmup):
        step(x, y, 0.01)
    rates = []
    for _ in range(windows):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x, y, 0.01)
        _sync(device)
        rates.append(steps * x.shape[0] / (time.perf_counter() - t0))
    return statistics.median(rates)


def _grid_copies(name: str, k: int, classes: int) -> list[torch.nn.Module]:
    """K different points of an SE grid (reduction 2, 4, 8, ... and the gates in turn), or
    K seeds of a plain model."""
    models = []
    for i in range(k):
        torch.manual_seed(i)
        opts = {"num_classes": classes}
        if name.startswith("se_"):
            opts.update(reduction=2 ** (1 + i % 5), gate=GRID_GATES[i % len(GRID_GATES)])
        models.append(senet.build(name, **opts))
    return models


def measure(name: str, path: str, args, batch: int, size: int, classes: int) -> Row:
    """One row, measured in this process (every path except per-gpu)."""
    device = torch.device(args.device)
    amp = torch.bfloat16 if device.type == "cuda" else None
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    fused = path.startswith("fused-")
    graphs = path == "graphs" or fused or (path.startswith("packed") and cuda)
    warmup = args.warmup + (4 if graphs else 0) + (args.compile_warmup if "compiled" in path
                                                   or fused else 0)
    if path.startswith("packed"):
        if path == "packed":
            models = []
            for seed in range(args.k):
                torch.manual_seed(seed)
                models.append(senet.build(name, num_classes=classes))
        else:
            models = _grid_copies(name, args.k, classes)
        model = pack(models).to(device, memory_format=torch.channels_last).train()
        parts = [_batch(batch, size, classes, device, seed) for seed in range(args.k)]
        x, y = pack_inputs([p[0] for p in parts]), pack_targets([p[1] for p in parts])
        images_per_step = batch * args.k
    else:
        model = _build(name, device, classes)
        x, y = _batch(batch, size, classes, device)
        images_per_step = batch
    if fused and name.startswith("se_"):
        fuse_se(model, region=path[len("fused-"):])
    opt = make_optimizer(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4,
                         nesterov=False, device=device, graphs=graphs)
    run_model = model
    if path == "compiled":
        run_model = torch.compile(model)
    elif path == "compiled-ro":
        run_model = torch.compile(model, mode="reduce-overhead")
    step = make_train_step(model, opt, amp_dtype=amp, graphs=graphs)
    step.model = run_model  # the compiled wrapper shares the model's parameters
    rate = _time(step, x, y, device, warmup, args.steps, args.windows)
    rate *= images_per_step / x.shape[0]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    note = ""
    if path.startswith("packed"):
        what = "points" if path == "packed-grid" and name.startswith("se_") else "seeds"
        note = f"K={args.k} {what}, {'graphs' if cuda else 'eager'}"
    elif fused:
        note = "graphs, compiled SE" if name.startswith("se_") else "graphs (no SE to fuse)"
    return Row(name, f"{batch}x{size}", path, rate, peak, note)


def measure_per_gpu(name: str, args, batch: int, size: int) -> Row:
    """K processes on the device at once, each on the graphs path; their img/s summed."""
    cmd = [sys.executable, __file__, "--child", name, "--device", args.device,
           "--batch", str(batch), "--size", str(size), "--steps", str(args.steps),
           "--windows", str(args.windows), "--warmup", str(args.warmup)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(args.k)]
    for p in procs:  # a barrier: all warmed up before any is timed
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"per-gpu child for {name} failed to start")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait()
    rate = sum(r["img_s"] for r in results)
    peaks = [r["peak_mib"] for r in results if r["peak_mib"] is not None]
    return Row(name, f"{batch}x{size}", "per-gpu", rate, sum(peaks) if peaks else None,
               f"K={args.k} processes, graphs; memory summed")


def child(args) -> None:
    device = torch.device(args.device)
    graphs = device.type == "cuda"
    classes = 1000 if args.size > 64 else 10
    model = _build(args.child, device, classes)
    x, y = _batch(args.batch, args.size, classes, device)
    opt = make_optimizer(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4,
                         nesterov=False, device=device, graphs=graphs)
    step = make_train_step(model, opt, amp_dtype=torch.bfloat16 if graphs else None,
                           graphs=graphs)
    if graphs:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup + 4):
        step(x, y, 0.01)
    _sync(device)
    print("ready", flush=True)
    sys.stdin.readline()
    rate = _time(step, x, y, device, 0, args.steps, args.windows)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if graphs else None
    print(json.dumps({"img_s": rate, "peak_mib": peak}), flush=True)


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, bf16 autocast"
    return f"CPU, {torch.get_num_threads()} threads, float32"


def table(rows: list[Row], device: torch.device, args) -> str:
    rate = {(r.model, r.path): r.img_s for r in rows}
    lines = [
        f"Training step throughput on {_where(device)}, channels_last, torch {torch.__version__}; "
        f"median of {args.windows} windows of {args.steps} steps; K = {args.k}",
        "",
        "| model | batch x size | path | img/s | SE cost (plain/SE time per image) | "
        "peak memory (MiB) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        plain = r.model.replace("se_", "").replace("seresnet", "resnet")
        cost = ""
        if plain != r.model and rate.get((plain, r.path)) and r.img_s:
            cost = f"{rate[(plain, r.path)] / r.img_s:.2f}x"
        img_s = "-" if r.img_s is None else (
            f"{r.img_s:,.0f}" if r.img_s >= 100 else f"{r.img_s:.1f}")
        peak = f"{r.peak_mib:,.0f}" if r.peak_mib is not None else "n/a"
        lines.append(f"| {r.model} | {r.shape} | {r.path} | {img_s} | {cost} | {peak} | "
                     f"{r.note} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (batch 8, 32x32 for all models, few steps): for CI")
    ap.add_argument("--paths", help=f"comma list from {','.join(ALL_PATHS)} "
                    "(default: all on CUDA; eager,packed on CPU)")
    ap.add_argument("--models", help="comma list (default: the six models, and timm's)")
    ap.add_argument("--k", type=int, default=4, help="copies for packed and per-gpu (default 4)")
    ap.add_argument("--steps", type=int, help="steps per timed window")
    ap.add_argument("--windows", type=int, help="timed windows (the median is reported)")
    ap.add_argument("--warmup", type=int, help="untimed steps before timing")
    ap.add_argument("--compile-warmup", type=int, default=3,
                    help="extra untimed steps on the compiled paths")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU intra-op threads (default 1: on a shared, loaded machine a "
                    "thread pool costs more than it gains on these small ops)")
    ap.add_argument("--no-timm", action="store_true", help="leave out the timm rows")
    ap.add_argument("--no-input", action="store_true", help="leave out the input rows")
    ap.add_argument("--input-root", help="an imagenet-style tree (train/<wnid>/*.JPEG) for the "
                    "input rows (default: synthetic JPEGs in a temporary folder)")
    ap.add_argument("--input-images", type=int,
                    help="images for the input rows (default 2048; 16 with --quick)")
    ap.add_argument("--input-workers", type=int, default=12,
                    help="loader workers for the whole-loader input rows (default 12)")
    # Internal: one per-gpu worker process.
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available here; use --device cpu --quick")
    quick = args.quick
    args.steps = args.steps or (1 if quick else 20)
    args.windows = args.windows or (2 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 5)
    if args.child:
        child(args)
        return
    if quick:
        args.k = min(args.k, 2)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    paths = args.paths.split(",") if args.paths else (
        ALL_PATHS if device.type == "cuda" else CPU_PATHS)
    for p in paths:
        if p not in ALL_PATHS:
            sys.exit(f"--paths: unknown path {p!r}; valid: {', '.join(ALL_PATHS)}")
    names = args.models.split(",") if args.models else [*CIFAR, *IMAGENET]
    if not args.no_timm and not args.models:
        try:
            import timm  # noqa: F401

            names += list(TIMM)
        except ImportError:
            print("timm is not installed: no timm rows", file=sys.stderr)
    rows: list[Row] = []
    for name in names:
        big = name in IMAGENET or name in TIMM
        batch, size = (8, 32) if quick else ((256, 224) if big else (128, 32))
        classes = 1000 if big else 10
        for path in paths:
            if name in TIMM and path in ("packed", "per-gpu"):
                continue  # packing is for our models; timm is the eager/compiled reference
            t0 = time.perf_counter()
            if device.type != "cuda" and path in CUDA_ONLY:
                rows.append(Row(name, f"{batch}x{size}", path, None, None,
                                f"skipped: needs {CUDA_ONLY[path]}"))
                print(f"{name:>16} {path:>12}: {rows[-1].note}", file=sys.stderr, flush=True)
                continue
            try:
                if path == "per-gpu":
                    row = measure_per_gpu(name, args, batch, size)
                else:
                    row = measure(name, path, args, batch, size, classes)
            except Exception as exc:  # noqa: BLE001 - a failed row is reported, not fatal
                row = Row(name, f"{batch}x{size}", path, None, None,
                          f"failed: {type(exc).__name__}: {str(exc)[:80]}")
            rows.append(row)
            shown = f"{row.img_s:,.0f} img/s" if row.img_s else row.note
            print(f"{name:>16} {path:>12}: {shown} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if not args.no_input:
        from bench_input import input_rows

        for stage in input_rows(device, args):
            rows.append(Row("input", stage.shape, stage.stage, stage.img_s, None, stage.note))
            shown = f"{stage.img_s:,.0f} img/s" if stage.img_s else stage.note
            print(f"{'input':>16} {stage.stage:>12}: {shown}", file=sys.stderr, flush=True)
    print(table(rows, device, args))
    if os.environ.get("BENCH_GPU_JSON"):
        Path(os.environ["BENCH_GPU_JSON"]).write_text(json.dumps([r.__dict__ for r in rows]))


if __name__ == "__main__":
    main()
