"""Throughput of the data pipeline alone (no model): images per second out of train_batches.

    python benchmarks/bench_data.py                                  # builtin only
    python benchmarks/bench_data.py --dataset builtin --dataset folder:/data/cifar10-jpeg
    python benchmarks/bench_data.py --dataset imagenet --data-root /data/imagenet --workers 8

Each dataset is loaded once (timed; for folder trees with --fresh-cache the first load
decodes the tree and a second load reads the cache), then train_batches is drawn for
--seconds in --repeats slices and the median img/s is reported, plus one val pass.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from senet.data import load_data  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", action="append", help="repeatable; default: builtin")
    p.add_argument("--data-root", default=None, help="root for cifar10/cifar100/imagenet")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per dataset")
    p.add_argument("--repeats", type=int, default=5, help="timed slices (median is reported)")
    p.add_argument("--workers", type=int, default=2, help="loader/decode processes")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--max-val-batches", type=int, default=50)
    p.add_argument(
        "--fresh-cache",
        action="store_true",
        help="use an empty SENET_CACHE so the first folder load includes decoding",
    )
    return p.parse_args(argv)


def timed_slices(data, seconds: float, repeats: int) -> list[float]:
    """img/s of `repeats` slices of about seconds/repeats each, over consecutive epochs.

    The first batch of each slice is untimed: it includes worker start-up and prefetch fill,
    a one-off cost rather than throughput. Later epoch boundaries are timed, as in training.
    """
    rates = []
    epoch = 0
    for _ in range(repeats):
        images, start = 0, None
        while True:
            for x, _y in data.train_batches(epoch):
                if start is None:
                    start = time.perf_counter()
                    continue
                images += x.shape[0]
                if time.perf_counter() - start >= seconds / repeats:
                    break
            epoch += 1
            if start is not None and time.perf_counter() - start >= seconds / repeats:
                break
        rates.append(images / (time.perf_counter() - start))
    return rates


def val_rate(data, max_batches: int) -> float:
    images, start = 0, time.perf_counter()
    for i, (x, _y) in enumerate(data.val_batches()):
        images += x.shape[0]
        if i + 1 >= max_batches:
            break
    return images / (time.perf_counter() - start)


def bench(name: str, args: argparse.Namespace) -> dict:
    kwargs = dict(
        root=args.data_root,
        device=torch.device("cpu"),
        subset=args.subset,
        seed=0,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    start = time.perf_counter()
    data = load_data(name, **kwargs)
    first_load = time.perf_counter() - start
    cached_load = None
    if name.startswith("folder:") and getattr(data, "from_cache", True) is False:
        # the first load decoded the tree: time the cache hit too
        start = time.perf_counter()
        data = load_data(name, **kwargs)
        cached_load = time.perf_counter() - start
    rates = timed_slices(data, args.seconds, args.repeats)
    return {
        "dataset": name,
        "images": f"{data.train_len}+{data.val_len}",
        "size": data.image_size,
        "first_load": first_load,
        "cached_load": cached_load,
        "train": statistics.median(rates),
        "spread": (min(rates), max(rates)),
        "val": val_rate(data, args.max_val_batches),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fresh_cache:
        os.environ["SENET_CACHE"] = tempfile.mkdtemp(prefix="senet-bench-cache-")
    rows = [bench(name, args) for name in args.dataset or ["builtin"]]
    print(
        f"\nbatch {args.batch_size}, workers {args.workers}, torch threads "
        f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, {args.seconds:g} s x "
        f"{args.repeats} slices\n"
    )
    print("| dataset | train+val images | side | first load s | cached load s "
          "| train img/s (median; min-max) | val img/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cached = f"{r['cached_load']:.2f}" if r["cached_load"] is not None else "-"
        lo, hi = r["spread"]
        print(
            f"| {r['dataset']} | {r['images']} | {r['size']} | {r['first_load']:.2f} | {cached} "
            f"| {r['train']:,.0f} ({lo:,.0f}-{hi:,.0f}) | {r['val']:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
