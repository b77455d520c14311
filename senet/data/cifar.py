"""CIFAR-10/100 from the python-pickle release, with torchvision's downloader when online.

torchvision's CIFAR classes check every batch file against the release's MD5 sums on each
load. The pickle batches are read directly here instead (same format), which skips that
~0.5 s hash and also accepts re-packed or test copies; downloads still go through
torchvision, whose download path does verify the archive.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from senet.errors import SenetError

URL_HOST = "www.cs.toronto.edu"
HOME_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarSpec:
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: str
    labels_key: str
    torchvision_class: str


SPECS = {
    "cifar10": CifarSpec(
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        names_key="label_names",
        labels_key="labels",
        torchvision_class="CIFAR10",
    ),
    "cifar100": CifarSpec(
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        names_key="fine_label_names",
        labels_key="fine_labels",
        torchvision_class="CIFAR100",
    ),
}


def default_root() -> Path:
    """Where CIFAR lives when no root is given: $SENET_DATA, else ./data."""
    return Path(os.environ.get("SENET_DATA") or "data")


Arrays = tuple[Tensor, Tensor]  # uint8 images (N,3,32,32), int64 labels


def load_cifar(name: str, root: str | None) -> tuple[list[str], Arrays, Arrays, Path]:
    """(class names, (train images, labels), (test images, labels), batches folder).

    Looks for the extracted batches, then for the archive in root (extracting it), then
    downloads if the machine is online and SENET_OFFLINE is unset.
    """
    spec = SPECS[name]
    base = Path(root).expanduser() if root else default_root()
    folder = base / spec.folder
    if not _complete(spec, folder):
        archive = base / spec.archive
        if archive.is_file():
            _extract(archive, base)
        elif _online():
            _download(name, spec, base)
        if not _complete(spec, folder):
            raise SenetError(_missing(name, base))
    meta = _unpickle(folder / spec.meta_file)
    class_names = [str(c) for c in meta[spec.names_key]]
    train = _read_batches(folder, spec.train_files, spec.labels_key)
    test = _read_batches(folder, spec.test_files, spec.labels_key)
    return class_names, train, test, folder


def check_release(name: str, root: str | None) -> None:
    """What load_cifar will find, told without reading a batch (milliseconds, plus a
    connection probe only when nothing is there): the extracted release, its archive, or a
    machine online to download it. Otherwise the one line load_cifar would say."""
    spec = SPECS[name]
    base = Path(root).expanduser() if root else default_root()
    if _complete(spec, base / spec.folder) or (base / spec.archive).is_file() or _online():
        return
    raise SenetError(_missing(name, base))


def _missing(name: str, base: Path) -> str:
    spec = SPECS[name]
    folder = base / spec.folder
    missing = next(f for f in _all_files(spec) if not (folder / f).is_file())
    return (f"{name}: no data under {base} (missing {folder / missing}); put {spec.archive} "
            f"(from {HOME_PAGE}) into {base} or run on a machine with internet")


def _all_files(spec: CifarSpec) -> list[str]:
    return [*spec.train_files, *spec.test_files, spec.meta_file]


def _complete(spec: CifarSpec, folder: Path) -> bool:
    return all((folder / f).is_file() for f in _all_files(spec))


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise SenetError(f"cannot read CIFAR file {path} ({exc}); delete it and re-fetch") from None


def _read_batches(folder: Path, files: tuple[str, ...], labels_key: str) -> Arrays:
    images, labels = [], []
    for name in files:
        entry = _unpickle(folder / name)
        try:
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = list(entry[labels_key])
        except (KeyError, ValueError) as exc:
            raise SenetError(f"{folder / name}: not a CIFAR batch ({exc})") from None
        if len(batch_labels) != data.shape[0]:
            count = f"{data.shape[0]} images but {len(batch_labels)} labels"
            raise SenetError(f"{folder / name}: {count}; delete it and re-fetch")
        images.append(data)
        labels.extend(batch_labels)
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _extract(archive: Path, dest: Path) -> None:
    from torchvision.datasets.utils import extract_archive

    try:
        extract_archive(str(archive), str(dest))
    except Exception as exc:  # tarfile/gzip raise assorted types for a damaged archive
        raise SenetError(f"cannot extract {archive} ({exc}); download it again") from None


def _online(timeout: float = 3.0) -> bool:
    """Whether the CIFAR host answers within `timeout` seconds.

    Name lookup ignores socket timeouts and can hang for a long time on a machine without
    a network, so the probe runs in a daemon thread that is simply abandoned if it is slow.
    """
    if os.environ.get("SENET_OFFLINE"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((URL_HOST, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _download(name: str, spec: CifarSpec, base: Path) -> None:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a stalled transfer fails instead of hanging forever
    try:
        base.mkdir(parents=True, exist_ok=True)
        dataset_class(str(base), train=True, download=True)
    except Exception as exc:  # URLError, timeouts, checksum RuntimeError, disk errors
        raise SenetError(
            f"{name}: download into {base} failed ({exc}); put {spec.archive} "
            f"(from {HOME_PAGE}) into {base} by hand"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
