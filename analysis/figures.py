"""Paper-style figures, each written as PNG and PDF.

The excitation plots take excitation statistics alone (a senet.excitation.stats.ExcitationStats
or an npz path), so `senet excitation` can call them without MLflow. Figures are
built on matplotlib Figure objects, not pyplot, so no global figure state or GUI backend
is involved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.excitation_select import (
    FLAT_FOOTNOTE,
    PAPER_CLASSES,
    PAPER_INTRA_CLASSES,
    PLANE_ASSUMPTION,
    PLANE_WNID,
    choose_classes,
    display_name,
    flat_classes,
    pick_blocks,
    sample_channels,
)
from analysis.figure_stamp import pdf_metadata, png_metadata
from analysis.tables import GridTable
from senet.excitation.stats import ExcitationStats

StatsLike = ExcitationStats | str | Path


def as_stats(stats: StatsLike) -> ExcitationStats:
    if isinstance(stats, ExcitationStats):
        return stats
    return ExcitationStats.load(stats)


DPI = 150


def save_figure(fig: Figure, out_path: str | Path) -> list[Path]:
    """``out_path`` with .png and .pdf suffixes (any given suffix is replaced), cropped
    to the drawn content plus savefig's padding, as ``bbox_inches="tight"`` does.

    savefig with "tight" lays the figure out (constrained layout) and measures it on
    every call, a full draw each time that costs as much as the rendering itself; here
    that is done once, at the PNG's resolution, and both files are rendered from it.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.set_dpi(DPI)  # text is measured as the PNG renders it
    fig.draw_without_rendering()  # runs the layout engine
    bbox = fig.get_tightbbox().padded(mpl.rcParams["savefig.pad_inches"])
    fig.set_layout_engine("none")  # keep that layout for both files
    written = []
    # Each file carries the hash of the code that drew it (analysis.figure_stamp).
    for suffix, metadata in ((".png", png_metadata()), (".pdf", pdf_metadata())):
        path = out.with_suffix(suffix)
        fig.savefig(path, dpi=DPI, bbox_inches=bbox, metadata=metadata)
        written.append(path)
    return written


def _style():
    # Seaborn's styles are rcParams; as context managers they leave no global change behind.
    return sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.25)


def _grid(
    n: int, ncols: int, panel: tuple[float, float], sharey: bool = False
) -> tuple[Figure, list[Any]]:
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _namer(class_names: Mapping[str, str] | None) -> Callable[[str], str]:
    names = dict(class_names or {})
    return lambda cls: names.get(cls) or display_name(cls)


def _channel_axis(shown: int, total: int) -> str:
    return f"channel ({shown} sampled of {total})" if shown < total else "channel index"


def _blocks_and_classes(
    stats: ExcitationStats,
    classes: Sequence[str] | None,
    blocks: Sequence[str] | None,
    k: int,
    preferred: Sequence[str] = tuple(PAPER_CLASSES),
) -> tuple[list[str], list[str]]:
    chosen_blocks = list(blocks) if blocks else pick_blocks(list(stats.blocks))
    missing = [b for b in chosen_blocks if b not in stats.blocks]
    if missing:
        raise KeyError(f"blocks not in the stats: {', '.join(missing)}")
    return chosen_blocks, choose_classes(stats, classes, k=k, preferred=preferred)


def _with_plane_note(title: str, classes: Sequence[str]) -> str:
    return f"{title}\n({PLANE_ASSUMPTION})" if PLANE_WNID in classes else title


def _mark_flat(ax: Any, stats: ExcitationStats, block: str, classes: Sequence[str],
               name: Callable[[str], str]) -> bool:
    """Say in the panel which classes are flat over the block's channels; True if any."""
    flat = flat_classes(stats, block, classes)
    if flat:
        text = "flat: " + ", ".join(f"{name(c)} ({m:.2f} ± {s:.2f})" for c, m, s in flat)
        ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=8, va="bottom",
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    return bool(flat)


def _legend_note(any_flat: bool) -> dict[str, Any]:
    """The figure legend's title: the note on flat classes, where a panel has one (the
    layout keeps room for a legend's title, not for free text below it)."""
    if not any_flat:
        return {}
    return {"title": f"{FLAT_FOOTNOTE}.", "title_fontproperties": {"size": 8, "style": "italic"}}


def plot_inter_class(
    stats: StatsLike,
    classes: Sequence[str] | None,
    blocks: Sequence[str] | None,
    out_path: str | Path,
    *,
    n_channels: int = 50,
    channel_seed: int = 0,
    title: str | None = None,
    class_names: Mapping[str, str] | None = None,
) -> list[Path]:
    """Paper Fig. 6: mean gate per sampled channel for 4 classes and all classes, per block.

    ``classes``/``blocks`` None picks the defaults (paper classes, pick_blocks);
    ``class_names`` maps stored class names (wnids) to legend names. Returns the PNG and
    PDF paths.
    """
    stats = as_stats(stats)
    blocks, classes = _blocks_and_classes(stats, classes, blocks, k=4)
    name = _namer(class_names)
    palette = sns.color_palette("deep", len(classes))
    axes_style, context = _style()
    with axes_style, context:
        fig, axes = _grid(len(blocks), ncols=3, panel=(4.6, 3.2), sharey=True)
        any_flat = False
        for ax, block in zip(axes, blocks, strict=True):
            b = stats.blocks[block]
            idx = sample_channels(b.mean.shape[1], n_channels, channel_seed)
            x = np.arange(len(idx))
            for color, cls in zip(palette, classes, strict=True):
                row = b.mean[stats.classes.index(cls), idx]
                ax.plot(x, row, color=color, lw=1.2, marker=".", ms=4, label=name(cls))
            ax.plot(x, b.all_mean[idx], color="black", lw=1.6, ls="--", label="all classes")
            any_flat |= _mark_flat(ax, stats, block, classes, name)
            ax.set_title(block)
            ax.set_xlabel(_channel_axis(len(idx), b.mean.shape[1]))
            ax.set_ylabel("activation")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False,
                   **_legend_note(any_flat))
        default = f"Inter-class excitation (channels sampled with seed {channel_seed})"
        fig.suptitle(_with_plane_note(title or default, classes))
        return save_figure(fig, out_path)


def plot_intra_class(
    stats: StatsLike,
    classes: Sequence[str] | None,
    blocks: Sequence[str] | None,
    out_path: str | Path,
    *,
    n_channels: int = 50,
    channel_seed: int = 0,
    title: str | None = None,
    class_names: Mapping[str, str] | None = None,
) -> list[Path]:
    """Paper Fig. 7: mean ± std of the gate over the images of one class, for 2 classes
    (one row each; by default the paper's goldfish and plane) at the same blocks and
    channels as plot_inter_class."""
    stats = as_stats(stats)
    blocks, classes = _blocks_and_classes(stats, classes, blocks, k=2,
                                          preferred=PAPER_INTRA_CLASSES)
    name = _namer(class_names)
    palette = sns.color_palette("deep", len(classes))
    axes_style, context = _style()
    with axes_style, context:
        ncols = len(blocks)
        fig, axes = _grid(ncols * len(classes), ncols=ncols, panel=(3.3, 2.7), sharey=True)
        any_flat = False
        for r, (cls, color) in enumerate(zip(classes, palette, strict=True)):
            k = stats.classes.index(cls)
            for c, block in enumerate(blocks):
                ax = axes[r * ncols + c]
                b = stats.blocks[block]
                idx = sample_channels(b.mean.shape[1], n_channels, channel_seed)
                x = np.arange(len(idx))
                mean, std = b.mean[k, idx], b.std[k, idx]
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.3, lw=0,
                                label=f"{name(cls)}: ± 1 std over images")
                ax.plot(x, mean, color=color, lw=1.3, label=f"{name(cls)}: mean")
                any_flat |= _mark_flat(ax, stats, block, [cls], name)
                ax.set_title(f"{block}, {name(cls)}")
                n_img = int(b.count[k])
                ax.set_ylabel(f"{name(cls)} (n = {n_img})\nactivation" if c == 0 else "")
                ax.set_xlabel(_channel_axis(len(idx), b.mean.shape[1]))
        handles, labels = [], []
        for r in range(len(classes)):
            h, lbl = axes[r * ncols].get_legend_handles_labels()
            handles += h
            labels += lbl
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False,
                   **_legend_note(any_flat))
        default = "Intra-class excitation: mean ± std over the images of a class"
        fig.suptitle(_with_plane_note(title or default, classes))
        return save_figure(fig, out_path)


def plot_error_by_variant(table: GridTable, out_path: str | Path) -> list[Path]:
    """Top-1 and (above 10 classes) top-5 error per variant: one dot per seed, a bar at
    the mean (joined by a line when a single setting such as r varies), the baseline mean
    dashed and, when the paper has rows for this dataset, its numbers as crosses. Finished
    seeds only."""
    seeds = table.seeds[table.seeds["state"] == "finished"].copy()
    order = [p.label for p in table.spec.points]
    seeds["seed"] = "seed " + seeds["seed"].astype(str)
    xlabel = table.spec.axis or "variant"
    # Joining the means implies an order: only when one setting (e.g. r) varies.
    join = "-" if table.spec.axis else "none"
    axes_style, context = _style()
    with axes_style, context:
        # Top-5 only where the table shows it: with 10 classes or fewer it is ~0 throughout.
        panels = [("top1", "top-1"), ("top5", "top-5")][: 2 if table.shows_top5 else 1]
        fig = Figure(figsize=(max(6.0, 1.3 * len(order)) * len(panels), 4.2),
                     layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (key, name) in zip(axes, panels, strict=True):
            values = seeds.dropna(subset=[key])
            if not values.empty:
                # Seed dots above the mean bars, so a single seed stays visible.
                sns.stripplot(data=values, x="label", y=key, hue="seed", order=order, ax=ax,
                              jitter=0.08, size=6, alpha=0.8, palette="deep", zorder=4)
                sns.pointplot(data=values, x="label", y=key, order=order, ax=ax,
                              estimator="mean", errorbar=None, color="black", markers="_",
                              markersize=22, markeredgewidth=2.5, linestyles=join,
                              linewidth=1.2, label="mean over seeds")
            base = table.rows.loc[table.rows["is_baseline"], f"{key}_mean"]
            if len(base) and not math.isnan(base.iloc[0]):
                ax.axhline(base.iloc[0], color="grey", ls="--", lw=1, label="baseline mean")
            if table.paper is not None:
                paper = table.rows[["label", f"paper_{key}"]].dropna()
                if not paper.empty:
                    xs = [order.index(lbl) for lbl in paper["label"]]
                    ax.scatter(xs, paper[f"paper_{key}"], marker="x", color="firebrick", s=50,
                               zorder=5, label=f"paper ({table.paper.table})")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{name} error (%)")
            ax.set_title(f"{name} error by {xlabel}")
            if len(order) > 4:
                for tick in ax.get_xticklabels():
                    tick.set_rotation(25)
                    tick.set_horizontalalignment("right")
            ax.legend(fontsize=8, title_fontsize=8)
        fig.suptitle(f"{table.spec.name}: error over seeds ({table.metric} epoch)")
        return save_figure(fig, out_path)


def plot_training_curves(
    history: pd.DataFrame, out_path: str | Path, *, order: Sequence[str] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Per-epoch curves per variant: mean over seeds with a ± std band.

    ``history`` has columns label, seed, key, step, value (keys val_top1_err, train_loss).
    """
    return save_figure(training_curves_figure(history, order=order, title=title), out_path)


def training_curves_figure(
    history: pd.DataFrame, *, order: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """The figure of plot_training_curves. Every epoch is drawn as a point on its line,
    so a 1-epoch grid, whose lines have no length, still shows its values."""
    panels = [("val_top1_err", "val top-1 error (%)"), ("train_loss", "train loss")]
    panels = [(k, n) for k, n in panels if (history["key"] == k).any()]
    order = list(order) if order else list(dict.fromkeys(history["label"]))
    axes_style, context = _style()
    with axes_style, context:
        fig = Figure(figsize=(6.0 * max(1, len(panels)), 4.2), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, max(1, len(panels)))).tolist()
        for ax, (key, name) in zip(axes, panels, strict=False):
            data = history[history["key"] == key]
            sns.lineplot(data=data, x="step", y="value", hue="label", hue_order=order,
                         errorbar="sd", ax=ax, palette="deep", marker="o", markersize=5)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(name)
            ax.set_title(name + " by epoch")
            ax.legend(title="variant (mean ± std over seeds)", fontsize=8, title_fontsize=8)
        fig.suptitle(title or "Training curves")
        return fig
