"""Excitation statistics (what the paper's Figs. 6 and 7 plot) and their npz file format.

The artifact `excitation/excitation_stats.npz` holds ``classes`` (K,) str, ``blocks`` (B,)
str, and per block b: ``b/mean`` (K, C) float32, ``b/std`` (K, C) float32, ``b/count`` (K,)
int64 and ``b/all_mean`` (C,) float32. Strings are stored as fixed-width unicode so the
file loads with allow_pickle=False.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from senet.errors import SenetError

ARTIFACT_PATH = "excitation/excitation_stats.npz"
_FIELDS = ("mean", "std", "count", "all_mean")


@dataclass
class BlockStats:
    """Gate statistics of one SE block: K classes by C channels."""

    mean: np.ndarray  # (K, C) mean gate per class and channel
    std: np.ndarray  # (K, C) std over the images of each class
    count: np.ndarray  # (K,) images per class
    all_mean: np.ndarray  # (C,) mean over all images (weighted by image, not by class)


@dataclass
class ExcitationStats:
    """Gate statistics for the probed SE blocks of one model on one image set."""

    classes: list[str]
    blocks: dict[str, BlockStats] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ExcitationStats:
        """From the dict senet.probe.excitation_stats returns:
        ``{"classes": [...], "blocks": [...], "<block>": {"mean": ..., ...}}``."""
        stats = cls(classes=[str(c) for c in data["classes"]])
        for name in data["blocks"]:
            block = data[name]
            stats.blocks[str(name)] = BlockStats(*(np.asarray(block[f]) for f in _FIELDS))
        return stats


def save_excitation_stats(path: str | Path, stats: ExcitationStats | Mapping[str, Any]) -> Path:
    """Write ``stats`` (an ExcitationStats or the probe's dict) to ``path``; return the path."""
    if not isinstance(stats, ExcitationStats):
        stats = ExcitationStats.from_mapping(stats)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "classes": np.array(stats.classes, dtype=str),
        "blocks": np.array(list(stats.blocks), dtype=str),
    }
    k = len(stats.classes)
    for name, b in stats.blocks.items():
        mean = np.asarray(b.mean)
        if mean.ndim != 2 or mean.shape[0] != k or np.shape(b.std) != mean.shape:
            raise ValueError(f"block {name}: mean/std must be ({k}, C), got {mean.shape}")
        if np.shape(b.count) != (k,) or np.shape(b.all_mean) != (mean.shape[1],):
            raise ValueError(f"block {name}: count must be ({k},) and all_mean (C,)")
        arrays[f"{name}/mean"] = mean.astype(np.float32)
        arrays[f"{name}/std"] = np.asarray(b.std, dtype=np.float32)
        arrays[f"{name}/count"] = np.asarray(b.count, dtype=np.int64)
        arrays[f"{name}/all_mean"] = np.asarray(b.all_mean, dtype=np.float32)
    # np.savez adds ".npz" to a name without it; writing through a handle keeps the name.
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_excitation_stats(path: str | Path) -> ExcitationStats:
    """Read a file written by save_excitation_stats; SenetError if it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            stats = ExcitationStats(classes=[str(c) for c in data["classes"]])
            for name in (str(b) for b in data["blocks"]):
                stats.blocks[name] = BlockStats(*(data[f"{name}/{f}"] for f in _FIELDS))
    except FileNotFoundError:
        raise SenetError(f"{path}: no such excitation stats file") from None
    except (KeyError, ValueError, OSError) as exc:
        raise SenetError(f"{path}: not an excitation stats npz ({exc})") from None
    return stats
