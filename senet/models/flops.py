"""Parameter and multiply-add counting, the way the paper reports "GFLOPs".

Counted, as one multiply-add each:
- every weight use of a convolution or linear layer;
- the residual addition of each unit (one per output element);
- in each SE block the squeeze (one add per input element; none for NoSqueeze), the
  two FC layers (at every position for NoSqueeze), and the channel-wise scale.
  Where SE sits right before the residual sum (``standard``, ``identity``) the scale
  and the addition are one fused multiply-add (the released Caffe model's Axpy layer),
  so the scale costs nothing extra.
BN, ReLU and the stem/head pooling are not counted. This is the one convention that
lands within 0.01 of every GFLOPs figure the paper prints (ResNet-50/101/152 with and
without SE, single-stage SE, SE_3x3, NoSqueeze); see the table in docs/models.md.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from senet.models.se import SqueezeExcitation


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


_FUSED_PLACEMENTS = ("standard", "identity")


def _se_macs(se: SqueezeExcitation, shape: torch.Size, fused: bool) -> int:
    _, c, h, w = shape
    fc = se.fc1.weight.numel() + se.fc2.weight.numel()
    squeeze = 0 if se.squeeze == "none" else c * h * w
    positions = h * w if se.squeeze == "none" else 1
    scale = 0 if fused else c * h * w
    return squeeze + fc * positions + scale


@contextmanager
def _record_se_inputs(model: nn.Module, shapes: list[tuple[SqueezeExcitation, torch.Size]]):
    """Temporarily wrap each SE block's ``excitation`` to see its input shape.

    SE blocks call their FC weights functionally, so module hooks would miss them.
    """

    def wrap(se: SqueezeExcitation):
        original = se.excitation

        def excitation(x: torch.Tensor) -> torch.Tensor:
            shapes.append((se, x.shape))
            return original(x)

        se.excitation = excitation
        return original

    with ExitStack() as stack:
        for m in model.modules():
            if isinstance(m, SqueezeExcitation):
                wrap(m)
                stack.callback(delattr, m, "excitation")
        yield


def count(model: nn.Module, input_size: int | None = None) -> Counts:
    """Params and multiply-adds of one forward pass on a single image."""
    size = input_size or getattr(model, "default_input_size", 224)
    macs = 0
    se_shapes: list[tuple[SqueezeExcitation, torch.Size]] = []
    se_params = {id(p) for m in model.modules() if isinstance(m, SqueezeExcitation)
                 for p in m.parameters()}

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        if id(m.weight) in se_params:
            return  # NoSqueeze calls its 1x1 convs as modules; counted with the SE block
        macs += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        macs += m.in_features * m.out_features

    def unit_hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out[0].numel()  # the residual addition (or the fused SE scale-add)

    fused = {id(m.se) for m in model.modules()
             if getattr(m, "se", None) is not None and m.placement in _FUSED_PLACEMENTS}

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif hasattr(m, "placement"):  # a residual unit
            handles.append(m.register_forward_hook(unit_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _record_se_inputs(model, se_shapes):
            device = next(model.parameters()).device
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    macs += sum(_se_macs(se, shape, id(se) in fused) for se, shape in se_shapes)
    params = sum(p.numel() for p in model.parameters())
    return Counts(params=params, macs=macs)
