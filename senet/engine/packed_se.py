"""The SE block of a packed model, when the K copies are different grid points.

Copies may differ in every SE choice that keeps the layout of the tensors a block passes
on: the squeeze (avg or max), the inner activation (ReLU or none), the gate (sigmoid,
tanh, ReLU), the FC bias (on or off) and the hidden width (the reduction ratio r).

- Squeeze, activation and gate are element-wise (per channel, or per hidden unit) once
  the K copies' channels are stacked, so each choice is computed for the whole stack and
  ``torch.where`` keeps, per channel, the value of that channel's copy. Every kept value
  is computed exactly as the plain block computes it, and ``where`` sends the gradient
  only to the kept branch, so each copy's forward and backward are its own.
- Hidden widths are padded to the widest copy: a copy with fewer units owns zero rows of
  the first FC and zero columns of the second. A padded unit's input is 0 (zero weights,
  zero bias), its activation is 0 (ReLU(0) = 0, identity(0) = 0), and its output weight
  is 0, so it changes no output. Its gradients are zero too: d/dW1 and d/db1 carry the
  factor W2[:, j] = 0, d/dW2 carries the unit's output 0. Under SGD with momentum and
  weight decay the update of a parameter that is 0 with gradient 0 is 0, so the padding
  stays exactly zero for the whole training.
- A copy without FC bias gets bias entries that the forward multiplies by a constant 0
  mask: they never reach the output, so their gradient is exactly 0 and (weight decay
  of a 0 is 0) they stay 0. Splitting the bias into a per-copy parameter list would need
  K small kernels; one masked bias add keeps one grouped convolution per FC.

``unpack`` (senet.engine.packed) gives each copy only its own units and, where it has
none, no bias at all, so each copy's state_dict is the plain model's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from senet.models.se import SqueezeExcitation

_GATES: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "none": lambda t: t}


def _squeeze_avg(x: Tensor) -> Tensor:
    # The plain block's own formula (sum, then scale), so the values are the same.
    return x.sum((2, 3), keepdim=True) * (1.0 / (x.shape[2] * x.shape[3]))


_SQUEEZES: dict[str, Callable[[Tensor], Tensor]] = {
    "avg": _squeeze_avg, "max": lambda x: x.amax((2, 3), keepdim=True), "none": lambda x: x}


def gate_name(se: SqueezeExcitation) -> str:
    for name, cls in (("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("relu", nn.ReLU)):
        if isinstance(se.gate, cls):
            return name
    raise TypeError(f"unknown SE gate {type(se.gate).__name__}")


def activation_name(se: SqueezeExcitation) -> str:
    return "relu" if isinstance(se.act, nn.ReLU) else "none"


class PaddedSEConv(nn.Module):
    """K 1x1 convolutions (one per copy) as one grouped convolution, each copy's input
    and output widths zero-padded to the widest copy's.

    weight: (K * out_max, in_max, 1, 1); copy k's real block is
    ``weight.view(K, out_max, in_max, 1, 1)[k, :out_k, :in_k]``.
    """

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        k = self.copies = len(convs)
        self.outs = [c.out_channels for c in convs]
        self.ins = [c.in_channels for c in convs]
        self.out_max, self.in_max = max(self.outs), max(self.ins)
        self.has_bias = [c.bias is not None for c in convs]
        ref = convs[0].weight
        self.weight = nn.Parameter(torch.zeros(k * self.out_max, self.in_max, 1, 1,
                                               device=ref.device, dtype=ref.dtype))
        if any(self.has_bias):
            self.bias = nn.Parameter(torch.zeros(k * self.out_max, device=ref.device,
                                                 dtype=ref.dtype))
        else:
            self.register_parameter("bias", None)
        if any(self.has_bias) and not all(self.has_bias):
            mask = torch.tensor(self.has_bias, dtype=ref.dtype, device=ref.device)
            # Not persistent: the state_dict stays exactly the copies' weights.
            self.register_buffer("bias_mask", mask.repeat_interleave(self.out_max),
                                 persistent=False)
        else:
            self.bias_mask = None
        with torch.no_grad():
            for i, conv in enumerate(convs):
                self.copy_slice("weight", self.weight, i).copy_(conv.weight)
                if conv.bias is not None:
                    self.copy_slice("bias", self.bias, i).copy_(conv.bias)

    @classmethod
    def from_copies(cls, convs: Sequence[nn.Conv2d]) -> PaddedSEConv:
        return cls(convs)

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias
        if self.bias_mask is not None:
            bias = bias * self.bias_mask
        return F.conv2d(x, self.weight, bias, groups=self.copies)

    def copy_slice(self, name: str, tensor: Tensor, k: int) -> Tensor | None:
        """Copy k's own part of ``tensor`` (laid out like parameter ``name``), a view;
        None for the bias of a copy that has none."""
        if name == "bias":
            if not self.has_bias[k]:
                return None
            return tensor.view(self.copies, self.out_max)[k, :self.outs[k]]
        return tensor.view(self.copies, self.out_max, self.in_max, 1, 1)[
            k, :self.outs[k], :self.ins[k]]

    def join(self, name: str, parts: Sequence[Tensor | None]) -> Tensor:
        """The packed layout of per-copy ``parts`` (None: no such tensor), zero-padded."""
        like = next(p for p in parts if p is not None)
        shape = (self.copies * self.out_max,) if name == "bias" else tuple(self.weight.shape)
        out = like.new_zeros(shape)
        for k, part in enumerate(parts):
            if part is not None:
                self.copy_slice(name, out, k).copy_(part)
        return out

    def extra_repr(self) -> str:
        return (f"copies={self.copies}, in={self.ins}, out={self.outs}, "
                f"bias={self.has_bias}")


class PackedSqueezeExcitation(nn.Module):
    """K SE blocks (one per copy, over the same number of channels) as one module with the
    plain block's methods: ``forward``, ``excitation`` and ``scale_add``."""

    def __init__(self, blocks: Sequence[SqueezeExcitation]) -> None:
        super().__init__()
        self.copies = len(blocks)
        self.channels = blocks[0].channels
        self.squeezes = [b.squeeze for b in blocks]
        self.activations = [activation_name(b) for b in blocks]
        self.gates = [gate_name(b) for b in blocks]
        self.fc1 = PaddedSEConv([b.fc1 for b in blocks])
        self.fc2 = PaddedSEConv([b.fc2 for b in blocks])
        ref = blocks[0].fc1.weight.device
        self._masks: dict[str, list[str]] = {}
        for what, choices, width in (("squeeze", self.squeezes, self.channels),
                                     ("act", self.activations, self.fc1.out_max),
                                     ("gate", self.gates, self.channels)):
            kinds = list(dict.fromkeys(choices))
            self._masks[what] = kinds
            for kind in kinds[1:]:  # the first kind is the default: no mask needed
                per_copy = torch.tensor([c == kind for c in choices], device=ref)
                mask = per_copy.repeat_interleave(width).view(1, -1, 1, 1)
                self.register_buffer(f"_{what}_{kind}", mask, persistent=False)

    def _per_copy(self, what: str, table: dict[str, Callable[[Tensor], Tensor]],
                  x: Tensor) -> Tensor:
        kinds = self._masks[what]
        out = table[kinds[0]](x)
        for kind in kinds[1:]:
            out = torch.where(getattr(self, f"_{what}_{kind}"), table[kind](x), out)
        return out

    def excitation(self, x: Tensor) -> Tensor:
        """The gate of every copy: (N, K*C, 1, 1), or (N, K*C, H, W) without squeeze."""
        s = self._per_copy("squeeze", _SQUEEZES, x)
        h = self._per_copy("act", _ACTIVATIONS, self.fc1(s))
        return self._per_copy("gate", _GATES, self.fc2(h))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.excitation(x)

    def scale_add(self, x: Tensor, residual: Tensor) -> Tensor:
        out = x * self.excitation(x)
        return out.add_(residual)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, squeeze={self.squeezes}, "
                f"activation={self.activations}, gate={self.gates}")
