"""Listing class-per-folder image trees (the torchvision ImageFolder layout)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from senet.data.images import IMAGE_SUFFIXES
from senet.errors import SenetError


@dataclass
class Split:
    """One split of a tree: image files in a fixed order with their class indices."""

    root: Path
    files: list[str]
    labels: list[int]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.files)


def find_split(root: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of root/<name> that exists, or an error naming all the places looked at."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    tried = " or ".join(str(root / n) for n in names)
    raise SenetError(f"{what}: missing split directory {tried}; expected <split>/<class>/<image>")


def tree_splits(dataset: str, data_root: str | None = None) -> tuple[Path, Path]:
    """The train and validation folders of a tree dataset: ``imagenet`` (under
    ``data_root``, with train/ and val/) or ``folder:PATH`` (train/ and test/ or val/)."""
    if dataset == "imagenet":
        if not data_root:
            raise SenetError("imagenet: no data root given; pass --data-root DIR with train/ "
                             "and val/")
        root, val_names = Path(data_root).expanduser(), ("val",)
    elif dataset.startswith("folder:") and len(dataset) > len("folder:"):
        root, val_names = Path(dataset[len("folder:"):]).expanduser(), ("test", "val")
    else:
        raise ValueError(f"{dataset!r} is not a tree dataset")
    if not root.is_dir():
        raise SenetError(f"{dataset}: no such directory {root}; fix the path")
    return find_split(root, ("train",), dataset), find_split(root, val_names, dataset)


def require_two_classes(dataset: str, split: Path, n_classes: int) -> None:
    """One class trains to 0% error and proves nothing: refuse it before any work."""
    if n_classes < 2:
        raise SenetError(f"{dataset}: {split} has {n_classes} class folder; a classifier "
                         "needs at least 2 classes (one folder per class)")


def scan_split(directory: Path, class_names: list[str] | None = None) -> Split:
    """Every image under directory/<class>/ (recursively), sorted by class then path.

    With class_names given (the training classes), validation folders must be among them, so
    label indices mean the same thing in both splits.
    """
    if not directory.is_dir():
        raise SenetError(f"no such directory: {directory}")
    found = sorted(e.name for e in os.scandir(directory) if e.is_dir() and e.name[0] != ".")
    if not found:
        raise SenetError(
            f"no class folders in {directory}; expected {directory}/<class>/<image files>"
        )
    if class_names is None:
        class_names = found
    else:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise SenetError(
                f"{directory}: class folders not present in the training split: "
                f"{', '.join(unknown[:5])}; make both splits use the same class names"
            )
    index = {name: i for i, name in enumerate(class_names)}
    files: list[str] = []
    labels: list[int] = []
    for name in found:
        for path in _images_under(directory / name):
            files.append(path)
            labels.append(index[name])
    if not files:
        raise SenetError(
            f"no image files under {directory} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return Split(root=directory, files=files, labels=labels, class_names=list(class_names))


def _images_under(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith("."):
                out.append(os.path.join(dirpath, name))
    out.sort()
    return out


def scan_class_folders(directory: Path, flag: str = "--data") -> Split:
    """Like scan_split, but every class folder must hold image files itself.

    A tree given one level too high (``DIR/val/<class>/<image>``) would otherwise be read
    as one class per split; the error names the folder that was probably meant.
    """
    split = scan_split(directory)
    direct = {name: _has_images(directory / name) for name in split.class_names}
    if all(direct.values()):
        return split
    nested = [n for n, ok in direct.items() if not ok and _has_class_folders(directory / n)]
    if nested:
        raise SenetError(
            f"{flag} {directory}: {directory / nested[0]} holds folders of images, not images; "
            f"give the folder whose subfolders are the classes, probably {flag} "
            f"{directory / nested[0]}"
        )
    bad = ", ".join(n for n, ok in direct.items() if not ok)
    raise SenetError(
        f"{flag} {directory}: class folders without image files of their own: {bad}; "
        f"expected {directory}/<class>/<image files>"
    )


def _has_images(folder: Path) -> bool:
    return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
               and not e.name.startswith(".") for e in os.scandir(folder))


def _has_class_folders(folder: Path) -> bool:
    return any(e.is_dir() and not e.name.startswith(".") and _has_images(Path(e.path))
               for e in os.scandir(folder))
