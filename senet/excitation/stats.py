"""Excitation statistics (what the paper's Figs. 6 and 7 plot) and their npz file format.

`senet.excitation.probe.excitation_stats` computes them; training logs them as the MLflow artifact
ARTIFACT_PATH; `analysis` and `senet excitation` read them back with ``ExcitationStats.load``.

The npz holds ``classes`` (K,) str, ``blocks`` (B,) str, and per block b: ``b/mean`` (K, C)
float32, ``b/std`` (K, C) float32, ``b/count`` (K,) int64 and ``b/all_mean`` (C,) float32.
Strings are stored as fixed-width unicode so the file loads with allow_pickle=False.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from senet.errors import SenetError

ARTIFACT_PATH = "excitation/excitation_stats.npz"


@dataclass
class BlockStats:
    """Gate statistics of one SE block: K classes by C channels."""

    mean: np.ndarray  # (K, C) mean gate per class and channel
    std: np.ndarray  # (K, C) std over the images of each class
    count: np.ndarray  # (K,) images per class
    all_mean: np.ndarray  # (C,) mean over all images (weighted by image, not by class)


_FIELDS = tuple(f.name for f in fields(BlockStats))


@dataclass
class ExcitationStats:
    """Gate statistics for the probed SE blocks of one model on one image set;
    ``blocks`` maps a block name (``SE_<stage>_<block>``) to its statistics, in model order."""

    classes: list[str]
    blocks: dict[str, BlockStats] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the npz file to ``path`` (parents created); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "classes": np.array(self.classes, dtype=str),
            "blocks": np.array(list(self.blocks), dtype=str),
        }
        k = len(self.classes)
        for name, b in self.blocks.items():
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

    @classmethod
    def load(cls, path: str | Path) -> ExcitationStats:
        """Read a file written by ``save``; SenetError naming the file if it is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                stats = cls(classes=[str(c) for c in data["classes"]])
                for name in (str(b) for b in data["blocks"]):
                    stats.blocks[name] = BlockStats(*(data[f"{name}/{f}"] for f in _FIELDS))
        except FileNotFoundError:
            raise SenetError(f"{path}: no such excitation stats file") from None
        except (KeyError, ValueError, OSError) as exc:
            raise SenetError(f"{path}: not an excitation stats npz ({exc})") from None
        return stats
