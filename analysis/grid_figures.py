"""All figures of one grid, from its table and the runs' MLflow histories and artifacts.

Excitation figures use one finished run per variant: by default its lowest seed that
logged `excitation/excitation_stats.npz` (a chosen seed with ``excitation_seed``).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.excitation_select import flat_notes, pick_blocks
from analysis.figures import (
    plot_error_by_variant,
    plot_inter_class,
    plot_intra_class,
    plot_training_curves,
)
from analysis.runs import download_artifact, metric_histories
from analysis.tables import GridTable
from senet.errors import SenetError
from senet.excitation.stats import ARTIFACT_PATH, ExcitationStats

CURVE_KEYS = ["val_top1_err", "train_loss"]


@dataclass
class FigureOptions:
    classes: Sequence[str] | None = None  # excitation classes (default: the paper's or first 4)
    excitation_seed: int | None = None
    excitation_points: Sequence[str] | None = None  # point ids or labels; None: all
    n_channels: int = 50
    channel_seed: int = 0


@dataclass
class FigureReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a reader must know about the data


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "variant"


def _curves(client: Any, table: GridTable, path: Path, report: FigureReport) -> None:
    done = table.seeds[table.seeds["state"] == "finished"]
    if done.empty:
        report.skipped.append(f"{table.spec.name}: no finished run, no training curves")
        return
    history = metric_histories(client, done["run_id"].tolist(), CURVE_KEYS)
    if history.empty:
        report.skipped.append(f"{table.spec.name}: the finished runs have no per-epoch metrics")
        return
    history = history.merge(done[["run_id", "label", "seed"]], on="run_id")
    order = [p.label for p in table.spec.points]
    title = f"{table.spec.name}: training curves (finished runs)"
    report.written += plot_training_curves(history, path, order=order, title=title)


def _excitation(
    client: Any, table: GridTable, folder: Path, options: FigureOptions, report: FigureReport
) -> None:
    wanted = set(options.excitation_points or [])
    points = [p for p in table.spec.points if not wanted or {p.point_id, p.label} & wanted]
    if wanted and not points:
        raise SenetError(f"{table.spec.name}: no variant named {', '.join(sorted(wanted))}")
    names = [slug(p.label) for p in points]
    with tempfile.TemporaryDirectory() as tmp:
        for point, name in zip(points, names, strict=True):
            if names.count(name) > 1:
                name = f"{name}-{point.point_id}"
            done = table.seeds[
                (table.seeds["point"] == point.point_id) & (table.seeds["state"] == "finished")
            ].sort_values("seed")
            if options.excitation_seed is not None:
                done = done[done["seed"] == options.excitation_seed]
            local = None
            for run in done.itertuples():
                local = download_artifact(client, run.run_id, ARTIFACT_PATH, Path(tmp) / run.run_id)
                if local is not None:
                    break
            if local is None:
                seed = "" if options.excitation_seed is None else f" seed {options.excitation_seed}"
                report.skipped.append(
                    f"{point.label}: no finished{seed} run with {ARTIFACT_PATH} "
                    "(a model without SE has none)"
                )
                continue
            stats = ExcitationStats.load(local)
            which = f"{table.spec.name}, {point.label}, seed {run.seed}"
            blocks = pick_blocks(list(stats.blocks))
            report.notes += [f"{point.label}, seed {run.seed}: {line}"
                             for line in flat_notes(stats, blocks, stats.classes)]
            kwargs = {"n_channels": options.n_channels, "channel_seed": options.channel_seed}
            stem = folder / f"{table.spec.short_name}_{name}"
            report.written += plot_inter_class(
                stats, options.classes, None, f"{stem}_inter_class",
                title=f"Inter-class excitation: {which}", **kwargs,
            )  # fmt: skip
            intra = list(options.classes)[:2] if options.classes else None
            report.written += plot_intra_class(
                stats, intra, None, f"{stem}_intra_class",
                title=f"Intra-class excitation (mean ± std over images): {which}", **kwargs,
            )  # fmt: skip


def grid_figures(
    client: Any, table: GridTable, out_root: str | Path, options: FigureOptions | None = None
) -> FigureReport:
    """Write the grid's figures under ``<out>/<dataset>/figures/``."""
    options = options or FigureOptions()
    folder = Path(out_root) / table.spec.folder / "figures"
    report = FigureReport()
    finished = table.seeds[table.seeds["state"] == "finished"]
    if pd.notna(finished["top1"]).any():
        report.written += plot_error_by_variant(table, folder / f"{table.spec.short_name}_error")
    else:
        report.skipped.append(f"{table.spec.name}: no finished run, no error figure")
    _curves(client, table, folder / f"{table.spec.short_name}_curves", report)
    _excitation(client, table, folder, options, report)
    return report
