"""Which blocks, channels and classes the excitation figures show (paper Figs. 6 and 7)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from senet.errors import SenetError
from senet.excitation.stats import ExcitationStats

# The classes of the paper's figures, by ImageNet wnid: Fig. 6 shows goldfish, pug,
# plane and cliff; Fig. 7 goldfish and plane. ImageNet has no class "plane": taking it as
# airliner (n02690373) is an assumption, and the figures say so.
PAPER_CLASSES = {
    "n01443537": "goldfish",
    "n02110958": "pug",
    "n02690373": "airliner",
    "n09246464": "cliff",
}
PAPER_INTRA_CLASSES = ("n01443537", "n02690373")  # Fig. 7: goldfish and plane
PLANE_WNID = "n02690373"
PLANE_ASSUMPTION = "'plane' of the paper taken as ImageNet's airliner (n02690373), an assumption"
_BLOCK = re.compile(r"^SE_(\d+)_(\d+)$")


def pick_blocks(names: Sequence[str]) -> list[str]:
    """The last block of every stage but the last, then the first, middle and last blocks
    of the last stage. For SE-ResNet-50 this gives the paper's SE_2_3, SE_3_4, SE_4_6,
    SE_5_1, SE_5_2 and SE_5_3; names are ``SE_<stage>_<block>`` in any order."""
    stages: dict[int, list[int]] = {}
    for name in names:
        m = _BLOCK.match(name)
        if m is None:
            raise SenetError(f"block name {name!r} is not of the form SE_<stage>_<block>")
        stages.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    if not stages:
        raise SenetError("no SE blocks to pick from (is this a model without SE?)")
    order = sorted(stages)
    picked = [(s, max(stages[s])) for s in order[:-1]]
    last = sorted(stages[order[-1]])
    for b in (last[0], last[(len(last) - 1) // 2], last[-1]):
        if (order[-1], b) not in picked:
            picked.append((order[-1], b))
    return [f"SE_{s}_{b}" for s, b in picked]


def sample_channels(n_total: int, n: int = 50, seed: int = 0) -> np.ndarray:
    """``n`` channel indices drawn uniformly without replacement (all if fewer), sorted.
    A fixed seed keeps the same channels across runs, variants and figures."""
    if n_total <= n:
        return np.arange(n_total)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def display_name(cls: str) -> str:
    """A readable class name: the paper's wnids by name, others as stored."""
    return PAPER_CLASSES.get(cls, cls)


def choose_classes(
    stats: ExcitationStats,
    wanted: Sequence[str] | None = None,
    k: int = 4,
    preferred: Sequence[str] = tuple(PAPER_CLASSES),
) -> list[str]:
    """The classes to plot: ``wanted`` (wnids or readable names) if given; else the
    ``preferred`` classes (the paper's) that have images, topped up with others spread
    evenly over the class list (not its first few: the built-in data lists its five warm
    classes before its five cool ones, and the first four would all be warm)."""
    lookup = {c: c for c in stats.classes}
    lookup.update({display_name(c): c for c in stats.classes})
    if wanted:
        unknown = [w for w in wanted if w not in lookup]
        if unknown:
            shown = ", ".join(stats.classes[:12]) + (" ..." if len(stats.classes) > 12 else "")
            raise SenetError(f"unknown class(es) {', '.join(unknown)}; the stats have: {shown}")
        return [lookup[w] for w in wanted]
    first = next(iter(stats.blocks.values()), None)
    seen = (
        {c for c, n in zip(stats.classes, first.count, strict=True) if n > 0}
        if first is not None
        else set(stats.classes)
    )
    chosen = [c for c in preferred if c in seen][:k]
    others = [c for c in stats.classes if c in seen and c not in chosen]
    need = min(k - len(chosen), len(others))
    return chosen + [others[i * len(others) // need] for i in range(need)]


# A class whose mean gate varies by less than this (std over the block's channels, on
# the gate's 0-1 scale) is flat there: its excitation carries no channel information, as
# when every hidden unit outputs zero for its images and the gate is sigmoid(bias).
FLAT_STD = 0.05


def flat_classes(stats: ExcitationStats, block: str, classes: Sequence[str],
                 tol: float = FLAT_STD) -> list[tuple[str, float, float]]:
    """(class, mean, std over channels) of the ``classes`` whose mean gate in ``block`` is
    flat over all its channels (std below ``tol``)."""
    b = stats.blocks[block]
    out = []
    for cls in classes:
        row = b.mean[stats.classes.index(cls)]
        if float(np.std(row)) < tol:
            out.append((cls, float(np.mean(row)), float(np.std(row))))
    return out


def flat_notes(stats: ExcitationStats, blocks: Sequence[str], classes: Sequence[str],
               tol: float = FLAT_STD) -> list[str]:
    """One line per block where some of ``classes`` are flat over channels, e.g.
    "SE_3_3: automobile flat over its 64 channels (0.50 ± 0.02)"."""
    lines = []
    for block in blocks:
        flat = flat_classes(stats, block, classes, tol)
        if flat:
            n = stats.blocks[block].mean.shape[1]
            what = ", ".join(f"{display_name(c)} ({m:.2f} ± {s:.2f})" for c, m, s in flat)
            lines.append(f"{block}: flat over its {n} channels: {what}")
    return lines


FLAT_FOOTNOTE = (f"flat: the class's mean gate varies by less than {FLAT_STD:g} (std) over "
                 "the block's channels, as when every hidden unit of the excitation outputs "
                 "zero for it; a flat class shows no channel pattern, class-specific or not")
