"""Train-step speed of our ResNet-50 / SE-ResNet-50 against timm's, side by side.

One process, CPU (or --device cuda), channels_last, batch 16 at 224x224, v1.5 layout
(timm's layout) so that like is compared with like. Models are timed round-robin so
that machine noise hits all of them alike; the table reports medians.

    python benchmarks/bench_models.py --steps 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import senet
from senet.models.se import SqueezeExcitation


def _addcmul(self: SqueezeExcitation, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(residual, x, self.excitation(x))


class _Addcmul(torch.nn.Module):
    """Our SE-ResNet-50 with scale and residual add fused into one torch.addcmul (Axpy)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = senet.build("se_resnet50", layout="v1.5")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        original = SqueezeExcitation.scale_add
        SqueezeExcitation.scale_add = _addcmul
        try:
            return self.inner(x)
        finally:
            SqueezeExcitation.scale_add = original


def models(with_timm: bool, compile_: bool) -> dict[str, torch.nn.Module]:
    found = {
        "ours resnet50": senet.build("resnet50", layout="v1.5"),
        "ours se_resnet50": senet.build("se_resnet50", layout="v1.5"),
        "ours se_resnet50 (addcmul scale+add)": _Addcmul(),
    }
    if with_timm:
        try:
            import timm

            found["timm resnet50"] = timm.create_model("resnet50")
            found["timm seresnet50"] = timm.create_model("seresnet50")
        except ImportError:
            print("timm not installed: timing our models only")
    if compile_:
        found["ours se_resnet50 (torch.compile)"] = torch.compile(
            senet.build("se_resnet50", layout="v1.5"))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=7, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-timm", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    nets = models(not args.no_timm, args.compile)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    opts = {}
    for name, net in nets.items():
        net.to(device, memory_format=torch.channels_last).train()
        opts[name] = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(name: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.cross_entropy(nets[name](x), y)
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {n: [] for n in nets}
    for i in range(args.warmup + args.steps):
        for name in nets:  # round-robin: noise spreads over every model alike
            t = step(name)
            if i >= args.warmup:
                times[name].append(t)
    med = {n: statistics.median(ts) for n, ts in times.items()}
    print(f"\ntrain step, batch {args.batch_size} at {args.size}x{args.size}, channels_last, "
          f"{device}, {torch.get_num_threads()} threads, median of {args.steps}\n")
    print("| model | median step (s) | img/s |")
    print("|---|---|---|")
    for n, t in med.items():
        print(f"| {n} | {t:.3f} | {args.batch_size / t:.1f} |")
    print("\n| ratio | value |")
    print("|---|---|")
    ours = med["ours se_resnet50"] / med["ours resnet50"]
    print(f"| our SE-ResNet-50 / our ResNet-50 | {ours:.3f} |")
    fused = med["ours se_resnet50 (addcmul scale+add)"] / med["ours resnet50"]
    print(f"| our SE-ResNet-50 with addcmul / our ResNet-50 | {fused:.3f} |")
    if "timm seresnet50" in med:
        print(f"| timm seresnet50 / timm resnet50 | "
              f"{med['timm seresnet50'] / med['timm resnet50']:.3f} |")
        print(f"| our SE-ResNet-50 / timm seresnet50 | "
              f"{med['ours se_resnet50'] / med['timm seresnet50']:.3f} |")
    if "ours se_resnet50 (torch.compile)" in med:
        print(f"| compiled / eager SE-ResNet-50 | "
              f"{med['ours se_resnet50 (torch.compile)'] / med['ours se_resnet50']:.3f} |")


if __name__ == "__main__":
    main()
