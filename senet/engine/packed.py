"""K copies of one model trained as ONE model: horizontal fusion, as in HFTA
(Wang et al., MLSys 2021).

The K copies' channels are stacked: copy k owns channels ``k*C .. (k+1)*C - 1`` of every
layer. Convolutions become grouped convolutions (groups multiplied by K), BatchNorm runs
over K*C channels (its statistics are per channel, so per copy), the SE block's 1x1
convolutions become grouped 1x1 convolutions, and the classifier becomes K independent
linear maps. Pooling, activations and the SE gate act per channel and need nothing.

Packing is generic: the structure of the first copy is deep-copied and each leaf layer
that holds weights is replaced by a packed equivalent in place, so every block's forward
code (every SE squeeze and placement, ImageNet and CIFAR models alike) runs untouched.

Input: the K copies' batches stacked on the channel axis, (N, K*3, H, W), so that each
copy keeps its own data order (``pack_inputs``). Output: logits (N, K, classes).

The parameters of the copies are disjoint and the training loss is the SUM of the K
cross-entropies (``packed_loss``), so the gradient of copy k's slice is exactly copy k's
own gradient, and any element-wise optimizer (SGD with momentum and weight decay) stays
equivalent per copy. The numbers differ from K separate runs only by floating-point
rounding (grouped and dense convolution kernels sum in different orders).

The copies need not be seeds of one grid point: they may differ in the SE choices that
keep the tensors' layout or can be zero-padded to it (``PACKABLE_OPTIONS``: squeeze avg or
max, inner activation, gate, FC bias, reduction ratio). Each SE block is then replaced by
a ``senet.engine.packed_se.PackedSqueezeExcitation``, which applies each copy's own
choice to its own channels and pads hidden widths with units that stay exactly zero
(the reasoning is in that module). ``pack_refusal`` says, in one line, why a set of
models cannot share a pack.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from senet.engine.packed_se import PackedSqueezeExcitation, PaddedSEConv
from senet.errors import SenetError
from senet.models.se import SqueezeExcitation

__all__ = [
    "PACKABLE_OPTIONS",
    "PackedModel",
    "pack",
    "pack_refusal",
    "unpack",
    "copy_param_counts",
    "pack_inputs",
    "pack_targets",
    "repeat_inputs",
    "packed_loss",
    "unpack_optimizer_state",
    "unpack_tensor",
    "pack_optimizer_state",
    "check_pack_size",
]


def check_pack_size(k: Any, what: str = "--pack") -> int:
    """``k`` as an int >= 1, or a one-line SenetError naming ``what``."""
    try:
        number = int(k)
        if isinstance(k, float) and number != k:
            raise ValueError
    except (TypeError, ValueError):
        raise SenetError(f"{what} {k!r}: expected an integer >= 1 (seeds per process)") from None
    if number < 1:
        raise SenetError(f"{what} {k!r}: expected an integer >= 1 (seeds per process)")
    return number


class PackedConv2d(nn.Conv2d):
    """K convolutions as one grouped convolution; weights stacked on the output axis."""

    copies: int

    @classmethod
    def from_copies(cls, convs: Sequence[nn.Conv2d]) -> PackedConv2d:
        first, k = convs[0], len(convs)
        packed = cls(
            first.in_channels * k, first.out_channels * k, first.kernel_size,
            stride=first.stride, padding=first.padding, dilation=first.dilation,
            groups=first.groups * k, bias=first.bias is not None,
            padding_mode=first.padding_mode, device=first.weight.device,
            dtype=first.weight.dtype,
        )
        packed.copies = k
        with torch.no_grad():
            packed.weight.copy_(torch.cat([c.weight for c in convs]))
            if packed.bias is not None:
                packed.bias.copy_(torch.cat([c.bias for c in convs]))
        return packed

    def copy_slice(self, name: str, tensor: Tensor, k: int) -> Tensor:
        return tensor.chunk(self.copies)[k]

    def join(self, name: str, parts: Sequence[Tensor]) -> Tensor:
        return torch.cat(list(parts))


class PackedBatchNorm2d(nn.BatchNorm2d):
    """K BatchNorms over C channels as one over K*C channels (statistics are per channel)."""

    copies: int

    @classmethod
    def from_copies(cls, bns: Sequence[nn.BatchNorm2d]) -> PackedBatchNorm2d:
        first, k = bns[0], len(bns)
        ref = first.weight if first.weight is not None else first.running_mean
        packed = cls(
            first.num_features * k, eps=first.eps, momentum=first.momentum,
            affine=first.affine, track_running_stats=first.track_running_stats,
            device=ref.device, dtype=ref.dtype,
        )
        packed.copies = k
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(packed, name) is not None:
                    getattr(packed, name).copy_(torch.cat([getattr(b, name) for b in bns]))
            if packed.num_batches_tracked is not None:
                counts = {int(b.num_batches_tracked) for b in bns}
                if len(counts) != 1:
                    raise SenetError(
                        "pack: the models' BatchNorm step counts differ; pack models at the "
                        "same point of training"
                    )
                packed.num_batches_tracked.copy_(bns[0].num_batches_tracked)
        return packed

    def copy_slice(self, name: str, tensor: Tensor, k: int) -> Tensor:
        if name == "num_batches_tracked":
            return tensor  # the copies train in lock step: one shared count
        return tensor.chunk(self.copies)[k]

    def join(self, name: str, parts: Sequence[Tensor]) -> Tensor:
        return parts[0] if name == "num_batches_tracked" else torch.cat(list(parts))


class PackedLinear(nn.Module):
    """K linear maps applied to the K copies' features: (N, K*in) -> (N, K, out)."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.copies = len(linears)
        self.in_features = linears[0].in_features
        self.out_features = linears[0].out_features
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]).clone())
        if linears[0].bias is not None:
            self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears]).clone())
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_copies(cls, linears: Sequence[nn.Linear]) -> PackedLinear:
        return cls(linears)

    def forward(self, x: Tensor) -> Tensor:
        # (K, N, in) @ (K, in, out): one batched matmul for all copies.
        x = x.reshape(x.shape[0], self.copies, self.in_features).transpose(0, 1)
        if self.bias is None:
            out = torch.bmm(x, self.weight.transpose(1, 2))
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))
        return out.transpose(0, 1)

    def copy_slice(self, name: str, tensor: Tensor, k: int) -> Tensor:
        return tensor[k]

    def join(self, name: str, parts: Sequence[Tensor]) -> Tensor:
        return torch.stack(list(parts))

    def extra_repr(self) -> str:
        return f"copies={self.copies}, in_features={self.in_features}, " \
               f"out_features={self.out_features}, bias={self.bias is not None}"


_PACKERS: dict[type, Any] = {
    nn.Conv2d: PackedConv2d.from_copies,
    nn.BatchNorm2d: PackedBatchNorm2d.from_copies,
    nn.Linear: PackedLinear.from_copies,
}


# SE options whose values may differ between the copies of one pack (see the module doc).
PACKABLE_OPTIONS = ("reduction", "squeeze", "activation", "gate", "bias")


class PackedModel(nn.Module):
    """K copies of one architecture as one module. ``forward``: (N, K*3, H, W) -> (N, K, C).

    ``body`` has the same module names as a plain model, so ``unpack`` maps its state
    back key for key. ``copy_options`` holds each copy's own model options;
    ``senet_options`` those that all copies share.
    """

    def __init__(self, body: nn.Module, copies: int, name: str | None,
                 copy_options: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        self.body = body
        self.copies = copies
        self.senet_name = name
        self.copy_options = [dict(o) for o in copy_options]
        first = self.copy_options[0]
        self.senet_options = {key: value for key, value in first.items()
                              if all(o.get(key) == value for o in self.copy_options)}
        self.num_classes = getattr(body, "num_classes", None)
        self.default_input_size = getattr(body, "default_input_size", None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        if out.dim() == 2:  # a model whose head is not a PackedLinear
            out = out.reshape(out.shape[0], self.copies, -1)
        return out


def _describe(model: nn.Module) -> tuple[Any, Any]:
    return getattr(model, "senet_name", type(model).__name__), getattr(model, "senet_options", {})


def _squeeze_kind(squeeze: str) -> str:
    return "no squeeze" if squeeze == "none" else "a pooled squeeze"


def _se_modules(model: nn.Module) -> dict[str, SqueezeExcitation]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SqueezeExcitation)}


def _inside(name: str, prefixes: Sequence[str]) -> bool:
    return any(name.startswith(p + ".") for p in prefixes)


def _shared_state_shapes(model: nn.Module, se_names: Sequence[str]) -> list[tuple[str, tuple]]:
    """Shapes of every state entry outside the SE blocks (those must match exactly)."""
    return [(n, tuple(t.shape)) for n, t in model.state_dict().items()
            if not _inside(n, se_names)]


def _layer_types(model: nn.Module, se_names: Sequence[str]) -> list[tuple[str, type]]:
    """Every module's name and type, but inside SE blocks (whose gate and activation
    modules may differ per copy)."""
    return [(n, type(m)) for n, m in model.named_modules() if not _inside(n, se_names)]


def pack_refusal(models: Sequence[nn.Module]) -> str | None:
    """Why ``models`` cannot be packed into one PackedModel, in one line; None if they can.

    They can when they are one architecture whose copies differ at most in
    ``PACKABLE_OPTIONS`` (a squeeze of none cannot share a pack with avg or max: the
    pooled copies would run their FC layers at every position).
    """
    models = list(models)
    name0, opts0 = _describe(models[0])
    se0 = _se_modules(models[0])
    layers0 = _layer_types(models[0], list(se0))
    shapes0 = _shared_state_shapes(models[0], list(se0))
    for i, m in enumerate(models[1:], start=1):
        name, opts = _describe(m)
        if name != name0:
            return f"model {i} is {name}, model 0 is {name0}; a pack holds one architecture"
        for key in sorted(set(opts0) | set(opts)):
            if key not in PACKABLE_OPTIONS and opts0.get(key) != opts.get(key):
                return (f"models 0 and {i} differ in option {key} ({opts0.get(key)!r} vs "
                        f"{opts.get(key)!r}), which changes the layers; only "
                        f"{', '.join(PACKABLE_OPTIONS)} may differ within a pack")
        if _layer_types(m, list(se0)) != layers0 or \
                _shared_state_shapes(m, list(se0)) != shapes0:
            return f"model {i} has other layers or shapes than model 0"
        for se_name, se in _se_modules(m).items():
            ref = se0[se_name]
            if se.channels != ref.channels:
                return f"model {i} has other layers or shapes than model 0 (at {se_name})"
            if _squeeze_kind(se.squeeze) != _squeeze_kind(ref.squeeze):
                return (f"model {i} has {_squeeze_kind(se.squeeze)}, model 0 "
                        f"{_squeeze_kind(ref.squeeze)}; squeeze none packs only with none")
        if m.training != models[0].training:
            return "the models are not all in the same train/eval mode"
    return None


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


def _replace(body: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(body.get_submodule(parent_name) if parent_name else body, attr, module)


def pack(models: Sequence[nn.Module]) -> PackedModel:
    """One PackedModel holding ``models``: K >= 1 copies of one architecture, alike but for
    ``PACKABLE_OPTIONS`` (``pack_refusal`` says why not, and this raises it).

    The copies' weights and BatchNorm statistics are copied in, stacked by copy; the
    models themselves are left unchanged.
    """
    models = list(models)
    check_pack_size(len(models), "--pack (number of models)")
    why = pack_refusal(models)
    if why is not None:
        raise SenetError(f"--pack: {why}")
    body = copy.deepcopy(models[0])
    se_names = list(_se_modules(models[0]))
    for name in se_names:
        packed_se = PackedSqueezeExcitation([m.get_submodule(name) for m in models])
        packed_se.train(models[0].training)
        _replace(body, name, packed_se)
    for name, leaf in _leaves(models[0]):
        if _inside(name, se_names):
            continue  # packed with its SE block above
        owns_state = any(True for _ in leaf.parameters(recurse=False)) or any(
            b is not None for b in leaf.buffers(recurse=False))
        packer = _PACKERS.get(type(leaf))
        if packer is None:
            if owns_state:
                raise SenetError(
                    f"pack: layer {name} ({type(leaf).__name__}) has weights and no packed "
                    "equivalent; only Conv2d, BatchNorm2d and Linear layers can be packed"
                )
            continue  # activations, pooling, gates: per-channel, nothing to stack
        packed_leaf = packer([m.get_submodule(name) for m in models])
        packed_leaf.train(leaf.training)
        _replace(body, name, packed_leaf)
    return PackedModel(body, len(models), _describe(models[0])[0],
                       [_describe(m)[1] for m in models])


_Leaf = PackedConv2d | PackedBatchNorm2d | PackedLinear | PaddedSEConv


def _layouts(packed: PackedModel) -> dict[str, tuple[_Leaf, str]]:
    """state_dict key -> (the packed leaf that owns it, its name in that leaf)."""
    found: dict[str, tuple[_Leaf, str]] = {}
    for mod_name, leaf in _leaves(packed.body):
        if not hasattr(leaf, "copy_slice"):
            continue
        prefix = f"{mod_name}." if mod_name else ""
        for key in leaf.state_dict():
            found[prefix + key] = (leaf, key)
    return found


def unpack_tensor(packed: PackedModel, key: str, tensor: Tensor) -> list[Tensor | None]:
    """The K copies' parts of ``tensor`` laid out like the packed state entry ``key``
    (a parameter, buffer, gradient or momentum buffer), as views; None for a copy that
    has no such entry (the SE bias of a copy without one)."""
    leaf, name = _layouts(packed)[key]
    return [leaf.copy_slice(name, tensor, k) for k in range(packed.copies)]


def unpack(packed: PackedModel) -> list[dict[str, Tensor]]:
    """Each copy's state_dict, loadable as is by the plain model (``senet.build(...)``):
    its own hidden units only, and no entry it does not have."""
    layouts = _layouts(packed)
    state = packed.body.state_dict()
    missing = [key for key in state if key not in layouts]
    if missing:
        raise SenetError(f"unpack: no copy layout for {missing[0]}; was this made by pack()?")
    out: list[dict[str, Tensor]] = [{} for _ in range(packed.copies)]
    for key, tensor in state.items():
        leaf, name = layouts[key]
        for k in range(packed.copies):
            part = leaf.copy_slice(name, tensor, k)
            if part is not None:
                out[k][key] = part.detach().clone()
    return out


def copy_param_counts(packed: PackedModel) -> list[int]:
    """Each copy's own number of parameters (what its plain model has; the padding and
    the masked biases of a pack are not counted)."""
    counts = [0] * packed.copies
    for key, p in packed.body.named_parameters():
        for k, part in enumerate(unpack_tensor(packed, key, p)):
            counts[k] += 0 if part is None else part.numel()
    return counts


def _copy_param_names(packed: PackedModel) -> list[list[str]]:
    """Per copy, its parameters' names in the order the plain model's ``parameters()``
    yields them: the body is a deep copy whose leaves register weight before bias, as the
    originals do, and a copy lacks only the entries it does not have."""
    names = [name for name, _ in packed.body.named_parameters()]
    layouts = _layouts(packed)
    per_copy: list[list[str]] = [[] for _ in range(packed.copies)]
    for name in names:
        leaf, key = layouts[name]
        for k in range(packed.copies):
            if not isinstance(leaf, PaddedSEConv) or key != "bias" or leaf.has_bias[k]:
                per_copy[k].append(name)
    return per_copy


def unpack_optimizer_state(packed: PackedModel, optimizer: torch.optim.Optimizer
                           ) -> list[dict[str, Any]]:
    """Each copy's optimizer state_dict, loadable by the same optimizer built over the plain
    model's ``parameters()`` (momentum buffers sliced like the weights they belong to).

    The optimizer must have been built over ``packed.parameters()`` in one group. A tensor
    learning rate is written as a float (this reads it from the device: call it at
    checkpoint time, not inside the step).
    """
    names = [name for name, _ in packed.body.named_parameters()]
    layouts = _layouts(packed)
    full = optimizer.state_dict()
    if len(full["param_groups"]) != 1 or len(full["param_groups"][0]["params"]) != len(names):
        raise SenetError("unpack_optimizer_state: build the optimizer over packed.parameters() "
                         "in one parameter group")
    group = {key: (float(v) if isinstance(v, Tensor) else v)
             for key, v in full["param_groups"][0].items()}
    ids = group["params"]
    out = []
    for k, own in enumerate(_copy_param_names(packed)):
        state = {}
        for j, name in enumerate(own):
            pid = ids[names.index(name)]
            if pid not in full["state"]:
                continue
            leaf, key = layouts[name]
            state[j] = {key2: (leaf.copy_slice(key, v, k).detach().clone()
                               if isinstance(v, Tensor) and v.dim() > 0 else v)
                        for key2, v in full["state"][pid].items()}
        out.append({"state": state, "param_groups": [{**group, "params": list(range(len(own)))}]})
    return out


def pack_optimizer_state(packed: PackedModel, optimizer: torch.optim.Optimizer,
                         states: Sequence[dict[str, Any]]) -> None:
    """Load K per-copy optimizer states (as ``unpack_optimizer_state`` makes them) into
    ``optimizer`` (built over ``packed.parameters()``), keeping its own hyperparameters.
    A copy without an entry (no SE bias) gets zeros there, as its padding has."""
    if len(states) != packed.copies:
        raise SenetError(f"pack_optimizer_state: {len(states)} states for {packed.copies} copies")
    named = list(packed.body.named_parameters())
    layouts = _layouts(packed)
    own = _copy_param_names(packed)
    for name, param in named:
        leaf, key = layouts[name]
        entries = []
        for k, state in enumerate(states):
            if name not in own[k]:
                entries.append(None)
                continue
            pid = state["param_groups"][0]["params"][own[k].index(name)]
            entry = state["state"].get(pid)
            if entry is None:
                break  # a parameter without state yet (no step taken): leave it so
            entries.append(entry)
        else:
            present = [e for e in entries if e is not None]
            merged = {}
            for key2, v0 in present[0].items():
                if isinstance(v0, Tensor) and v0.dim() > 0:
                    parts = [None if e is None else e[key2] for e in entries]
                    merged[key2] = leaf.join(key, parts).to(param.device, param.dtype)
                else:
                    merged[key2] = v0
            optimizer.state[param] = merged


def pack_inputs(xs: Sequence[Tensor]) -> Tensor:
    """K batches (N, 3, H, W), one per copy, as one (N, K*3, H, W) batch (channels_last)."""
    return torch.cat(list(xs), dim=1).contiguous(memory_format=torch.channels_last)


def repeat_inputs(x: Tensor, copies: int) -> Tensor:
    """One batch shown to every copy (evaluation): (N, 3, H, W) -> (N, K*3, H, W)."""
    return x.repeat(1, copies, 1, 1).contiguous(memory_format=torch.channels_last)


def pack_targets(ys: Sequence[Tensor]) -> Tensor:
    """K label vectors (N,) as one (N, K) tensor."""
    return torch.stack(list(ys), dim=1)


def packed_loss(logits: Tensor, y: Tensor, label_smoothing: float = 0.0
                ) -> tuple[Tensor, Tensor]:
    """(sum over copies, per-copy mean cross-entropy (K,)) for logits (N, K, C), y (N, K).

    Backpropagate the sum: each copy then gets the gradient of its own mean loss.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # autocast's half logits: the loss in float32
    per_sample = F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none",
                                 label_smoothing=label_smoothing)
    per_copy = per_sample.mean(0)
    return per_copy.sum(), per_copy
