"""Stratified training subsets: the first images of each class, as evenly spread as possible."""

from __future__ import annotations

import torch
from torch import Tensor

from senet.errors import SenetError


def class_quotas(counts: list[int], n: int) -> list[int]:
    """How many images to take from each class so the total is n and the spread is even.

    Classes too small for an equal share give all they have; the rest is shared among the
    others (remainders go to the lowest class indices, so the result is deterministic).
    """
    quotas = [0] * len(counts)
    open_classes = [i for i, c in enumerate(counts) if c > 0]
    left = n
    while left > 0 and open_classes:
        share, extra = divmod(left, len(open_classes))
        still_open = []
        for rank, i in enumerate(open_classes):
            want = share + (1 if rank < extra else 0)
            take = min(want, counts[i] - quotas[i])
            quotas[i] += take
            left -= take
            if quotas[i] < counts[i]:
                still_open.append(i)
        open_classes = still_open
    return quotas


def stratified_subset(labels: Tensor, n: int, num_classes: int) -> Tensor:
    """Indices (sorted, int64) of the first images of each class adding up to n."""
    total = labels.numel()
    if n < num_classes:
        raise SenetError(f"subset {n} is smaller than the number of classes ({num_classes})")
    if n > total:
        raise SenetError(f"subset {n} is larger than the training set ({total} images)")
    labels = labels.to("cpu", torch.int64)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    quotas = class_quotas(counts, n)
    # Rank of each image within its class, in dataset order; keep those below the class quota.
    order = torch.argsort(labels, stable=True)
    starts = torch.cumsum(torch.tensor([0] + counts[:-1]), 0)
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(total) - starts[labels[order]]
    keep = rank < torch.tensor(quotas)[labels]
    return torch.nonzero(keep).flatten()
