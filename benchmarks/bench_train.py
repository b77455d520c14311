"""Training throughput (img/s) of CIFAR-sized models, with and without SE, beside the
throughput of the data pipeline alone, in one process.

    python benchmarks/bench_train.py                       # CPU: ResNet-20/110 +- SE
    python benchmarks/bench_train.py --device cuda --imagenet   # GPU: + SE-ResNet-50 bf16

Train steps are timed round-robin over the models (noise hits all alike); medians.
The data pipeline is the engine's own: batched crop/flip/normalise on the device.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import senet
from senet.data import load_data


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_train(models: dict, batch_fn, device, steps: int, warmup: int, amp: bool) -> dict:
    opts = {n: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for n, m in models.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    for i in range(warmup + steps):
        for name, model in models.items():
            x, y = batch_fn()
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(x).float(), y)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {n: len(batch_fn()[1]) / statistics.median(ts) for n, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--models", default="resnet20,se_resnet20,resnet110,se_resnet110")
    ap.add_argument("--imagenet", action="store_true",
                    help="also SE-ResNet-50 / ResNet-50 at 224, bf16, batch 256 (for GPUs)")
    args = ap.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"

    data = load_data("builtin", root=None, device=device, subset=None, seed=0,
                     batch_size=args.batch_size)
    stream = iter(())
    epoch = 0

    def next_batch():
        nonlocal stream, epoch
        try:
            return next(stream)
        except StopIteration:
            epoch += 1
            stream = iter(data.train_batches(epoch))
            return next(stream)

    # The data pipeline alone, over two whole epochs.
    _sync(device)
    t0 = time.perf_counter()
    n = 0
    for e in (101, 102):
        for _, y in data.train_batches(e):
            n += len(y)
    _sync(device)
    data_rate = n / (time.perf_counter() - t0)

    torch.manual_seed(0)
    models = {name: senet.build(name).to(device, memory_format=torch.channels_last).train()
              for name in args.models.split(",")}
    rates = time_train(models, next_batch, device, args.steps, args.warmup, amp)
    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if amp else
                           f", {torch.get_num_threads()} threads")
    print(f"\nCIFAR-size training, batch {args.batch_size}, channels_last, {where}, "
          f"median of {args.steps} steps\n")
    print("| model | train img/s | data pipeline / model |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.0f} | {data_rate / rate:.0f}x |")
    print(f"| data pipeline alone (crop+flip+normalise) | {data_rate:.0f} | |")
    for plain in [m for m in rates if f"se_{m}" in rates]:
        print(f"\nSE cost on {plain}: {rates[plain] / rates['se_' + plain]:.3f}x time per image")

    if args.imagenet:
        x = torch.randn(256, 3, 224, 224, device=device).contiguous(
            memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (256,), device=device)
        nets = {n: senet.build(n).to(device, memory_format=torch.channels_last)
                for n in ("resnet50", "se_resnet50")}
        big = time_train(nets, lambda: (x, y), device, args.steps, args.warmup, amp)
        print("\n| ImageNet model, batch 256, 224x224, bf16 autocast | train img/s |")
        print("|---|---|")
        for name, rate in big.items():
            print(f"| {name} | {rate:.0f} |")


if __name__ == "__main__":
    main()
