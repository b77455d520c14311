"""load_data: dataset name -> ready-to-train Data."""

from __future__ import annotations

import torch

from senet.data.augment import channel_stats
from senet.data.base import Data, tensor_digest
from senet.errors import SenetError

VALID_NAMES = "builtin, cifar10, cifar100, imagenet, folder:PATH"

DATASETS_HELP = (
    "builtin (default: synthetic 32x32 colour textures, 10 classes, no files needed); "
    "cifar10 / cifar100 (python release under --data-root, default ./data; downloaded when "
    "missing and online); imagenet (--data-root with train/ and val/, one folder per wnid); "
    "folder:PATH (class-per-folder tree with train/ and test/ or val/; images up to 64 px are "
    "decoded once and cached in $SENET_CACHE or ~/.cache/senet)"
)


def load_data(
    dataset: str,
    *,
    root: str | None,
    device: torch.device,
    subset: int | None,
    seed: int,
    batch_size: int,
    workers: int = 4,
    train_size: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> Data:
    """Load `dataset` (see DATASETS_HELP) for training on `device`.

    subset: use only the first `subset` training images, stratified by class.
    train_size: input side for imagenet-style (streamed) datasets; default 224.
    rank, world: under torchrun, a streamed dataset reads and decodes only this rank's
    slice of every global batch (its ``rank_sliced`` is then True); in-memory ones ignore
    them and hand every rank the whole batch.
    """
    device = torch.device(device)
    common = dict(device=device, subset=subset, seed=seed, batch_size=batch_size)
    shard = dict(rank=rank, world=world)
    if dataset == "builtin":
        return _builtin(train_size=train_size, **common)
    if dataset in ("cifar10", "cifar100"):
        return _cifar(dataset, root, train_size=train_size, **common)
    if dataset == "imagenet":
        return _imagenet(root, workers=workers, train_size=train_size, **common, **shard)
    if dataset.startswith("folder:") and len(dataset) > len("folder:"):
        from senet.data.folder import load_folder

        path = dataset[len("folder:") :]
        return load_folder(path, workers=workers, train_size=train_size, **common, **shard)
    raise SenetError(f"unknown dataset {dataset!r}; choose one of {VALID_NAMES}")


def check_dataset(dataset: str, root: str | None = None) -> int | None:
    """What can be told of ``dataset`` without reading an image: a known name; for CIFAR
    the release under ``root`` (or online to fetch it); for imagenet a root with train/ and
    val/; for folder:PATH a tree whose train/ and test/
    (or val/) each hold at least two class folders. Milliseconds, so that a command can
    run it before it records anything. Returns the number of classes where the name alone
    tells it (the built-in data, CIFAR, a folder tree), else None."""
    from senet.data.scan import require_two_classes, tree_splits

    if dataset == "builtin":
        from senet.data.builtin import CLASS_NAMES

        return len(CLASS_NAMES)
    if dataset in ("cifar10", "cifar100"):
        from senet.data.cifar import check_release

        check_release(dataset, root)
        return int(dataset[len("cifar"):])
    if dataset == "imagenet":
        tree_splits(dataset, root)
        return None
    if dataset.startswith("folder:") and len(dataset) > len("folder:"):
        counts = []
        for split in tree_splits(dataset):
            classes = [e for e in split.iterdir() if e.is_dir() and not e.name.startswith(".")]
            require_two_classes(dataset, split, len(classes))
            counts.append(len(classes))
        return counts[0]
    raise SenetError(f"unknown dataset {dataset!r}; choose one of {VALID_NAMES}")


def _builtin(**kwargs) -> Data:
    from senet.data import builtin
    from senet.data.tensor_data import build_tensor_data

    made = builtin.builtin_data()
    return build_tensor_data(
        name="builtin",
        class_names=builtin.CLASS_NAMES,
        train=made.train,
        val=made.val,
        stats=made.stats,
        source=f"senet://builtin/{builtin.GENERATOR_VERSION}",
        digest=made.digest,
        **kwargs,
    )


def _cifar(name: str, root: str | None, **kwargs) -> Data:
    from senet.data.cifar import load_cifar
    from senet.data.tensor_data import build_tensor_data

    class_names, train, test, folder = load_cifar(name, root)
    return build_tensor_data(
        name=name,
        class_names=class_names,
        train=train,
        val=test,
        stats=channel_stats(train[0]),
        source=str(folder.resolve()),
        digest=tensor_digest(*train, *test),
        **kwargs,
    )


def _imagenet(root: str | None, **kwargs) -> Data:
    from senet.data.scan import scan_split, tree_splits
    from senet.data.streaming import StreamingData

    train_dir, val_dir = tree_splits("imagenet", root)
    train = scan_split(train_dir)
    val = scan_split(val_dir, train.class_names)
    source = str(train_dir.parent.resolve())
    return StreamingData(name="imagenet", train=train, val=val, source=source, **kwargs)
