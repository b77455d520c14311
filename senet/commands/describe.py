"""senet describe: parameters and multiply-adds of a model, as the paper counts them."""

from __future__ import annotations

import argparse
import json

HELP = "print a model's parameters and GMACs (the paper's 'GFLOPs')"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model name, e.g. se_resnet50 or resnet110")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="model option, e.g. --set reduction=8 (repeatable)")
    p.add_argument("--input-size", type=int, default=None,
                   help="input side in pixels (default 224 ImageNet, 32 CIFAR)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


# The count runs one real forward pass: a side far above any dataset's would only exhaust memory.
MAX_INPUT_SIZE = 4096


def check_input_size(size: int | None) -> None:
    """--input-size is a side in pixels: 0 or less (or an absurd size) is refused, not
    replaced by the default or passed on to torch."""
    from senet.errors import SenetError

    if size is not None and not 1 <= size <= MAX_INPUT_SIZE:
        raise SenetError(f"--input-size {size}: expected a side in pixels from 1 to "
                         f"{MAX_INPUT_SIZE}; leave it out for the model's own (224 for "
                         "ImageNet models, 32 for CIFAR ones)")


def run(args: argparse.Namespace) -> int:
    from senet.models import build, se_blocks
    from senet.models.flops import count
    from senet.settings.config import parse_sets

    check_input_size(args.input_size)
    model = build(args.model, **parse_sets(args.set))
    size = args.input_size or model.default_input_size
    counts = count(model, size)
    blocks = list(se_blocks(model))
    info = {
        "model": args.model,
        "options": model.senet_options,
        "input_size": size,
        "params": counts.params,
        "params_m": round(counts.params / 1e6, 3),
        "macs": counts.macs,
        "gmacs": round(counts.gmacs, 4),
        "se_blocks": len(blocks),
    }
    if args.json:
        print(json.dumps(info))
        return 0
    opts = ", ".join(f"{k}={v}" for k, v in model.senet_options.items())
    print(f"{args.model} ({opts})")
    print(f"  input      {size}x{size}")
    print(f"  params     {counts.params:,} ({counts.params / 1e6:.2f}M)")
    print(f"  GMACs      {counts.gmacs:.4f}  (the paper's 'GFLOPs')")
    if blocks:
        print(f"  SE blocks  {len(blocks)}: {blocks[0]} ... {blocks[-1]}")
    return 0
