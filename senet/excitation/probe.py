"""The excitation probe: record what each SE gate outputs, keyed by ``SE_x_y``.

Hooks exist only inside ``record_excitations``; outside it the model runs untouched,
so the probe costs nothing during training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from senet.excitation.stats import BlockStats, ExcitationStats
from senet.models.common import se_blocks


@dataclass
class Excitations:
    """``gates[name]`` is (N, C); NoSqueeze blocks also keep ``maps[name]`` (N, C, H, W)."""

    gates: dict[str, torch.Tensor] = field(default_factory=dict)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)


@contextmanager
def record_excitations(model: nn.Module, keep_maps: bool = False) -> Iterator[Excitations]:
    """Record every SE gate of the forward passes run inside the ``with`` block.

    Spatial gates (NoSqueeze) are reduced to (N, C) by their spatial mean; with
    ``keep_maps`` the full maps are kept too. Repeated forwards append along N.
    """
    found = Excitations()

    def hook_for(name: str):
        def hook(_module: nn.Module, _inp, out: torch.Tensor) -> None:
            gate = out.detach().float()
            if gate.dim() == 4:
                if gate.shape[2] * gate.shape[3] > 1 and keep_maps:
                    _append(found.maps, name, gate.cpu())
                gate = gate.mean((2, 3))
            _append(found.gates, name, gate.cpu())

        return hook

    blocks = se_blocks(model)
    handles = [se.gate.register_forward_hook(hook_for(name)) for name, se in blocks.items()]
    try:
        yield found
    finally:
        for h in handles:
            h.remove()


def _append(store: dict[str, torch.Tensor], name: str, value: torch.Tensor) -> None:
    store[name] = torch.cat([store[name], value]) if name in store else value


@torch.no_grad()
def excitation_stats(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    class_names: list[str],
) -> ExcitationStats:
    """Per SE block and class: mean and std of the gate per channel, plus the all-class mean.

    Sums are kept in float64 and per batch, so memory does not grow with the dataset.
    """
    k = len(class_names)
    was_training = model.training
    model.eval()
    sums: dict[str, list[torch.Tensor]] = {}
    counts = torch.zeros(k, dtype=torch.float64)
    try:
        for x, y in batches:
            with record_excitations(model) as rec:
                model(x)
            y = y.cpu()
            onehot = torch.nn.functional.one_hot(y, k).to(torch.float64)  # (N, K)
            counts += onehot.sum(0)
            for name, gate in rec.gates.items():
                g = gate.to(torch.float64)
                s, sq = onehot.T @ g, onehot.T @ (g * g)
                if name in sums:
                    sums[name][0] += s
                    sums[name][1] += sq
                else:
                    sums[name] = [s, sq]
    finally:
        model.train(was_training)
    stats = ExcitationStats(classes=[str(c) for c in class_names])
    denom = counts.clamp(min=1)[:, None]
    for name, (s, sq) in sums.items():
        mean = s / denom
        var = (sq / denom - mean * mean).clamp(min=0)
        stats.blocks[name] = BlockStats(
            mean=mean.float().numpy(),
            std=var.sqrt().float().numpy(),
            count=counts.numpy().astype("int64"),
            all_mean=(s.sum(0) / counts.sum().clamp(min=1)).float().numpy(),
        )
    return stats
