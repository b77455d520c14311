"""The fused SE path: regional ``torch.compile`` of the SE block or of the residual unit
that holds it, opt-in (``TrainConfig.fused_se``); the eager block stays the reference.

Eager, an SE block is six small kernels on 8x8-32x32 maps (squeeze, FC, activation, FC,
gate, scale) plus the residual add: on CIFAR-size nets their launches, not their
arithmetic, are the cost. Compiling a region lets Inductor fuse them:

- ``region="se"``: each SE block's ``forward`` and ``scale_add`` (the gate, the scale and
  the residual add in one kernel; the squeeze a reduction of its own). The convolutions
  of the unit stay cuDNN's. This is the default: the smallest region, so the fewest
  graphs to compile and the least that can differ from eager.
- ``region="block"``: each residual unit that holds an SE block, whole (BN-ReLU folded
  into the neighbouring elementwise work; the squeeze fused with the scale-add's read).
  Larger fusions, more compile time and more graphs.

Both run inside the step's CUDA graph: compiled code only launches kernels, so the first
(eager, warm-up) steps compile it and the capture records the compiled kernels.

Blocks of one stage share a compiled graph (Dynamo keys a graph on the code and on
guarded shapes, and treats parameters as inputs), so the number of graphs is about the
number of distinct block shapes times two (training and evaluation); the recompile limit
is raised to cover it, since past it Dynamo would silently run the rest eager.

Apply it to the model that trains, after ``senet.engine.packed.pack`` where there is one
(``pack`` deep-copies its models, and the compiled wrappers are not meant to be copied).
"""

from __future__ import annotations

import torch
from torch import nn

from senet.errors import SenetError

REGIONS = ("se", "block")
_FUSED = "_senet_fused_se"


def is_se_block(module: nn.Module) -> bool:
    # The plain block and the packed one (senet.engine.packed_se) have the same methods.
    return hasattr(module, "excitation") and hasattr(module, "scale_add")


def _regions(model: nn.Module, region: str) -> list[nn.Module]:
    if region == "se":
        return [m for m in model.modules() if is_se_block(m)]
    return [m for m in model.modules() if getattr(m, "se", None) is not None
            and hasattr(m, "placement")]


def fuse_se(model: nn.Module, *, region: str = "se", backend: str = "inductor",
            mode: str | None = None) -> int:
    """Compile, in place, every SE region of ``model``; returns how many were wrapped.

    ``backend`` is torch.compile's (``aot_eager`` runs the traced graphs with eager
    kernels: the CPU tests use it to check the tracing without a C++ build). Calling it
    again on the same model changes nothing.
    """
    if region not in REGIONS:
        raise SenetError(f"fused SE region {region!r}: expected one of {', '.join(REGIONS)}")
    if getattr(model, _FUSED, None) is not None:
        return 0
    targets = _regions(model, region)
    if not targets:
        raise SenetError(f"fused SE: {type(model).__name__} has no SE block to fuse; "
                         "use an se_ model or leave the flag off")
    shapes = {(type(m), _width(m)) for m in targets}
    limit = 2 * len(shapes) + 4  # training and evaluation per shape, and some slack
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, limit)
    options = {"backend": backend, "dynamic": False, **({"mode": mode} if mode else {})}
    for m in targets:
        m.forward = torch.compile(m.forward, **options)
        if region == "se":
            m.scale_add = torch.compile(m.scale_add, **options)
    setattr(model, _FUSED, region)
    return len(targets)


def fused_region(model: nn.Module) -> str | None:
    """The region ``fuse_se`` compiled in ``model``, or None (eager)."""
    return getattr(model, _FUSED, None)


def _width(module: nn.Module) -> int:
    se = module if is_se_block(module) else module.se
    return int(se.fc1.weight.shape[0])
