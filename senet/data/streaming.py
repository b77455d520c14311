"""Datasets of full-size image files (ImageNet and large-image folders), loaded per batch.

Worker processes decode, crop and resize with PIL and send uint8 arrays; the main process
moves them to the device and normalises there. Shuffling and the per-image augmentation
parameters come from a generator seeded from (seed, epoch), and each image's crop is drawn
from its own seed, so batches do not depend on which worker handled which image.

Under torchrun (``rank``/``world``), every rank walks the same global batches but reads
and decodes only its own slice of each, the images ``x[rank::world]`` of the whole batch
would keep: a rank's batches are exactly those slices, with the same crops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from senet.data.augment import Normalizer
from senet.data.base import Batch, epoch_generator, short_digest, small_ops_threads
from senet.data.images import open_rgb
from senet.data.pipeline import CropPlan, ImageFiles, LoadError, Pipeline
from senet.data.scan import Split
from senet.data.subset import stratified_subset
from senet.errors import SenetError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_SIZE = 224


class EpochSampler(Sampler):
    """Yields (index, per-image seed) in an order fixed by (seed, epoch); call set_epoch first."""

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(self.length, generator=gen).tolist()
        seeds = torch.randint(0, 2**62, (self.length,), generator=gen).tolist()
        return iter(zip(order, seeds, strict=True))

    def __len__(self) -> int:
        return self.length


class RankBatchSampler(Sampler):
    """Global batches of ``batch_size`` keys drawn from ``sampler``, of which this rank
    keeps positions rank, rank + world, ... An empty slice (a last batch smaller than the
    world) is skipped."""

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, rank: int,
                 world: int) -> None:
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list]:
        batch: list = []
        for key in self.sampler:
            batch.append(key)
            if len(batch) == self.batch_size:
                yield batch[self.rank::self.world]
                batch = []
        if batch and not self.drop_last and batch[self.rank::self.world]:
            yield batch[self.rank::self.world]

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full + int(not self.drop_last and rest > self.rank)


class PilImages(ImageFiles):
    """Decodes one file with PIL into a uint8 (S,S,3) tensor. Keys: index or (index, seed)."""

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int] | LoadError:
        index, sample_seed = key if isinstance(key, tuple) else (key, 0)
        try:
            img = open_rgb(self.files[index])
        except SenetError as exc:
            return LoadError(str(exc))
        return torch.from_numpy(self.plan.apply(img, sample_seed)), self.labels[index]


def stack_collate(samples: list) -> tuple[torch.Tensor, torch.Tensor] | LoadError:
    for s in samples:
        if isinstance(s, LoadError):
            return s
    return torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples])


class StreamingData:
    """An image-file dataset read batch by batch through a DataLoader."""

    def __init__(
        self,
        *,
        name: str,
        train: Split,
        val: Split,
        device: torch.device,
        subset: int | None,
        seed: int,
        batch_size: int,
        workers: int,
        train_size: int | None,
        source: str,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if not 0 <= rank < world:
            raise SenetError(f"{name}: rank {rank} is outside a world of {world} processes; "
                             "check RANK and WORLD_SIZE")
        self.name = name
        self.rank, self.world = rank, world
        # The training loop must not slice these batches again (train.py's x[rank::world]).
        self.rank_sliced = world > 1
        self.class_names = list(train.class_names)
        self.num_classes = len(self.class_names)
        self.image_size = train_size or DEFAULT_SIZE
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.workers = max(0, workers)
        self.source = source
        train_files, train_labels = train.files, train.labels
        if subset is not None:
            keep = stratified_subset(torch.tensor(train_labels), subset, self.num_classes).tolist()
            train_files = [train_files[i] for i in keep]
            train_labels = [train_labels[i] for i in keep]
        if len(train_files) < batch_size:
            raise SenetError(
                f"{name}: batch size {batch_size} is larger than the training set "
                f"({len(train_files)} images); lower the batch size or the subset"
            )
        self.train_len = len(train_files)
        self.val_len = len(val.files)
        self.digest = _listing_digest(train, val, subset)
        self._train = (train_files, train_labels)
        self._val = (val.files, val.labels)
        self._normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, self.device)
        self._sampler = EpochSampler(self.train_len, seed)
        self._train_loader: DataLoader | None = None
        self._pipeline = _choose_pipeline(self.device)

    def steps_per_epoch(self) -> int:
        return self.train_len // self.batch_size

    def _plan(self, train: bool) -> CropPlan:
        return CropPlan(self.image_size, train, round(self.image_size * 256 / 224))

    def _loader(self, train: bool) -> DataLoader:
        files, labels = self._train if train else self._val
        dataset, collate = self._pipeline.dataset(files, labels, self._plan(train))
        workers = self.workers
        order = self._sampler if train else SequentialSampler(dataset)
        return DataLoader(
            dataset,
            batch_sampler=RankBatchSampler(order, self.batch_size, train, self.rank,
                                           self.world),
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            # Train workers live across epochs; val runs once per epoch, so it starts fresh.
            persistent_workers=train and workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _batches(self, loader: DataLoader) -> Iterator[Batch]:
        for raw in loader:
            if isinstance(raw, LoadError):
                raise SenetError(raw.message)
            with small_ops_threads(self.device):
                x, y = self._pipeline.assemble(raw, self.device, self.image_size)
                batch = self._normalize(x), y.to(self.device, non_blocking=True)
            yield batch

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        if self._train_loader is None:
            self._train_loader = self._loader(train=True)
        self._sampler.set_epoch(epoch)
        return self._batches(self._train_loader)

    def val_batches(self) -> Iterator[Batch]:
        return self._batches(self._loader(train=False))


def _pil_dataset(files: list[str], labels: list[int], plan: CropPlan) -> tuple[Dataset, Callable]:
    return PilImages(files, labels, plan), stack_collate


def _pil_assemble(raw: Any, device: torch.device, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = raw
    # (B,H,W,3) -> logical NCHW with channels_last strides: no copy.
    return x.to(device, non_blocking=True).permute(0, 3, 1, 2), y


PIL_PIPELINE = Pipeline(_pil_dataset, _pil_assemble)


def _choose_pipeline(device: torch.device) -> Pipeline:
    """PIL on CPU by default; torchvision decoding on the device when CUDA (nvJPEG) is there.

    SENET_GPU_DECODE=1 forces the device-decode path (on a CPU device it decodes with
    torchvision on the CPU, which is how it is tested here), =0 disables it.
    """
    flag = os.environ.get("SENET_GPU_DECODE", "").strip()
    if flag == "1" or (flag != "0" and device.type == "cuda"):
        from senet.data.gpu_decode import DEVICE_PIPELINE

        return DEVICE_PIPELINE
    return PIL_PIPELINE


def _listing_digest(train: Split, val: Split, subset: int | None) -> str:
    """Identity of the file listing (relative paths, sizes, labels); content is not hashed,
    which would mean reading the whole of ImageNet."""
    parts: list[str] = [f"subset={subset}"]
    for split in (train, val):
        for path, label in zip(split.files, split.labels, strict=True):
            rel = os.path.relpath(path, split.root)
            parts.append(f"{rel}:{os.path.getsize(path)}:{label}")
    return short_digest(*parts)
