"""Excitation statistics of a model on a class-per-folder image set, without training.

What `senet excitation` runs: pick up to N images per class, feed them through the eval
transform of the training pipeline (resize, centre crop, ImageNet normalisation) and
collect the SE gates with senet.excitation.probe.excitation_stats.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from senet.data.augment import Normalizer
from senet.data.pipeline import CropPlan, LoadError
from senet.data.scan import Split
from senet.data.streaming import IMAGENET_MEAN, IMAGENET_STD, PilImages, stack_collate
from senet.errors import SenetError
from senet.excitation.probe import excitation_stats
from senet.excitation.stats import ExcitationStats


def read_synsets(path: str | None) -> dict[str, str]:
    """``wnid name, other names`` lines (LOC_synset_mapping.txt) -> {wnid: first name}."""
    if not path:
        return {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SenetError(f"--synsets {path}: {exc.strerror}") from None
    names = {}
    for line in lines:
        wnid, _, rest = line.strip().partition(" ")
        if wnid:
            names[wnid] = rest.split(",")[0].strip()
    return names


def resolve_classes(
    wanted: Sequence[str], split: Split, names: Mapping[str, str], flag: str = "--classes"
) -> list[str]:
    """Class folder names for ``wanted`` items given as folder names or readable names."""
    by_name = {n: folder for folder, n in names.items()}
    found = []
    for item in wanted:
        folder = item if item in split.class_names else by_name.get(item)
        if folder is None or folder not in split.class_names:
            hint = "" if item in by_name else " (name it by wnid, or pass --synsets to map names)"
            raise SenetError(f"{flag}: {item!r} is not a class folder of {split.root}{hint}")
        found.append(folder)
    return found


def take_per_class(split: Split, per_class: int) -> Split:
    """The first ``per_class`` images of every class (the all-class mean needs them all)."""
    if per_class < 1:
        raise SenetError("--per-class must be >= 1")
    taken: dict[int, int] = {}
    files, labels = [], []
    for f, y in zip(split.files, split.labels, strict=True):
        if taken.get(y, 0) < per_class:
            taken[y] = taken.get(y, 0) + 1
            files.append(f)
            labels.append(y)
    return Split(root=split.root, files=files, labels=labels, class_names=split.class_names)


def eval_batches(
    split: Split, device: torch.device, size: int, batch_size: int, workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised channels_last batches with the training pipeline's eval transform."""
    plan = CropPlan(size, train=False, resize=round(size * 256 / 224))
    loader = DataLoader(PilImages(split.files, split.labels, plan), batch_size=batch_size,
                        num_workers=workers, collate_fn=stack_collate,
                        pin_memory=device.type == "cuda")
    normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, device)
    for raw in loader:
        if isinstance(raw, LoadError):
            raise SenetError(raw.message)
        x, y = raw
        yield normalize(x.to(device, non_blocking=True).permute(0, 3, 1, 2)), y


def folder_excitation_stats(
    model: nn.Module,
    split: Split,
    device: torch.device,
    *,
    size: int = 224,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool | None = None,
) -> ExcitationStats:
    """Gate statistics of ``model`` (already on ``device``) over every image of ``split``;
    ``progress`` (default: when stderr is a terminal) counts images on stderr."""
    tty = sys.stderr.isatty() if progress is None else progress

    def counted() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        done = 0
        for x, y in eval_batches(split, device, size, batch_size, workers):
            yield x, y
            done += len(y)
            if tty:
                print(f"\r{done}/{len(split)} images", end="", file=sys.stderr, flush=True)
        start = "\r" if tty else ""
        print(f"{start}{done} images of {len(set(split.labels))} classes", file=sys.stderr)

    return excitation_stats(model, counted(), split.class_names)
