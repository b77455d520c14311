"""senet figures: paper-style figures per grid, or from an excitation stats file."""

from __future__ import annotations

import argparse

HELP = "draw each grid's figures (error by variant, training curves, excitation, as PNG and PDF)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from analysis.cli_args import add_grid_arguments

    add_grid_arguments(p, "output root (default results); each grid's figures go to "
                          "OUT/<grid name>/figures/, e.g. results/cifar10/reduction/figures/ "
                          "for cifar10/reduction, whether the grid is given by name or as a "
                          ".toml path (--npz: OUT/figures/)")
    p.add_argument("--classes", type=_comma_list, metavar="A,B,...",
                   help="comma list of classes for the excitation figures (wnids or names, "
                        "as in `senet excitation`); default: Fig. 6's goldfish, pug, airliner "
                        "and cliff, and Fig. 7's goldfish and plane (taken as airliner, an "
                        "assumption) where present, else classes spread evenly over the "
                        "class list (built-in data: warm and cool)")
    p.add_argument("--excitation-seed", type=int, metavar="SEED",
                   help="use this seed's run for the excitation figures "
                        "(default: each variant's lowest finished seed with excitation stats)")
    p.add_argument("--excitation-variant", action="append", metavar="VARIANT",
                   help="only these variants (label or point id; repeatable) get excitation "
                        "figures (default: all with excitation stats)")
    p.add_argument("--channels", type=int, default=50, metavar="N",
                   help="channels sampled per block (default 50, as the paper)")
    p.add_argument("--channel-seed", type=int, default=0, metavar="SEED",
                   help="seed of the channel sample (default 0)")
    p.add_argument("--npz", action="extend", nargs="+", metavar="FILE",
                   help="instead of grids, draw the excitation figures of these "
                        "excitation_stats.npz files, to OUT/figures/<file stem>_*.png")


def _comma_list(text: str) -> list[str]:
    """`goldfish,pug` -> ["goldfish", "pug"]: the --classes syntax of every command."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma list of class names, e.g. a,b")
    return names


def _from_npz(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from analysis.figures import plot_inter_class, plot_intra_class

    folder = Path(args.out) / "figures"
    kwargs = {"n_channels": args.channels, "channel_seed": args.channel_seed}
    intra = args.classes[:2] if args.classes else None
    files = [Path(npz).resolve() for npz in args.npz]
    names = [f.stem for f in files]
    if len(set(names)) < len(names):
        # Several runs' excitation_stats.npz: name each by the folders that tell them apart.
        common = Path(os.path.commonpath([f.parent for f in files]))
        names = ["_".join(f.relative_to(common).with_suffix("").parts) for f in files]
    for npz, name in zip(args.npz, names, strict=True):
        stem = folder / name
        paths = plot_inter_class(npz, args.classes, None, f"{stem}_inter_class", **kwargs)
        paths += plot_intra_class(npz, intra, None, f"{stem}_intra_class", **kwargs)
        print(npz)
        for path in paths:
            print(f"  {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.npz:
        if args.grids:
            from senet.errors import SenetError

            raise SenetError("give grids or --npz files, not both")
        return _from_npz(args)
    from senet.commands.tables import never_run, open_grids, results_view

    opened = open_grids(args.tracking_uri, args.grids, "draw")
    if opened is None:
        return 0
    client, names = opened
    from analysis.collect import gather
    from analysis.grid_figures import FigureOptions, grid_figures
    from analysis.paper import load_paper_numbers
    from analysis.tables import build_table

    book = load_paper_numbers()
    options = FigureOptions(
        classes=args.classes,
        excitation_seed=args.excitation_seed,
        excitation_points=args.excitation_variant,
        n_channels=args.channels,
        channel_seed=args.channel_seed,
    )
    items = gather(client, names)
    if args.grids:
        never_run(items, client.tracking_uri, "draw")
    for item in items:
        table = build_table(item.spec, item.runs, book, metric=args.metric)
        report = grid_figures(client, table, args.out, options)
        print(f"{item.spec.name}: {len(report.written)} files")
        for path in report.written:
            print(f"  {path}")
        for line in report.skipped:
            print(f"  skipped: {line}")
        for line in report.notes:
            print(f"  note: {line}")
        for line in results_view(client, args.tracking_uri, item.spec.name, table.shows_top5):
            print(line)
    return 0
