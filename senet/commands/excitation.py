"""senet excitation: the paper's Figs. 6 and 7 from a trained or released model,
on a local ImageNet-style validation folder, without any training."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "draw the excitation figures (paper Figs. 6/7) from weights on a validation folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="se_resnet50", help="an se_ model (default se_resnet50)")
    p.add_argument("--weights", help="released SE-ResNet weights or a senet weights.pt; "
                                     "without it the model is randomly initialised (dry run)")
    p.add_argument("--data", required=True,
                   help="validation folder whose subfolders are the classes: DIR/<wnid>/<images>")
    p.add_argument("--classes", help="comma list of wnids or names (default: the paper's "
                                     "goldfish,pug,airliner,cliff where present)")
    p.add_argument("--synsets", help="optional 'wnid name, ...' file (LOC_synset_mapping.txt) "
                                     "to name classes beyond the paper's four")
    p.add_argument("--per-class", type=int, default=50, help="images per class (default 50)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model option (only without released weights)")
    p.add_argument("--out", default="results/imagenet/excitation", help="output folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=int, default=224, help="centre crop (resize is size*8/7)")


def run(args: argparse.Namespace) -> int:
    import torch

    from analysis.excitation_select import PAPER_CLASSES
    from analysis.figures import plot_inter_class, plot_intra_class
    from senet.data.scan import scan_class_folders
    from senet.engine.train import pick_device
    from senet.errors import SenetError
    from senet.excitation.folder import (
        folder_excitation_stats,
        read_synsets,
        resolve_classes,
        take_per_class,
    )
    from senet.models import build, se_blocks
    from senet.settings.config import parse_sets

    split = scan_class_folders(Path(args.data), "--data")
    images = take_per_class(split, args.per_class)
    wanted = None
    if args.classes:
        names = {**read_synsets(args.synsets), **PAPER_CLASSES}
        items = [c.strip() for c in args.classes.split(",") if c.strip()]
        wanted = resolve_classes(items, split, names)

    device = pick_device(args.device)
    if args.weights:
        model = build(args.model, weights=args.weights, **parse_sets(args.set))
    else:
        print("no --weights given: using randomly initialised weights (a dry run of the "
              "pipeline; the figures say nothing about a trained model)")
        model = build(args.model, **parse_sets(args.set))
    if not se_blocks(model):
        raise SenetError(f"model {args.model} has no SE blocks; use an se_ model")
    model = model.to(device, memory_format=torch.channels_last).eval()
    if model.fc.out_features < len(split.class_names):
        print(f"note: {len(split.class_names)} class folders, model has "
              f"{model.fc.out_features} outputs (only the gates are used)")

    stats = folder_excitation_stats(model, images, device, size=args.size,
                                    batch_size=args.batch_size, workers=args.workers)
    out = Path(args.out)
    npz = stats.save(out / "excitation_stats.npz")
    fig_dir = out / "figures"
    tag = "released weights" if args.weights else "random weights"
    inter = plot_inter_class(stats, wanted, None, fig_dir / "inter_class_excitation",
                             title=f"Inter-class excitation, {args.model} ({tag})")
    intra = plot_intra_class(stats, wanted[:2] if wanted else None, None,
                             fig_dir / "intra_class_excitation",
                             title=f"Intra-class excitation, {args.model} ({tag})")
    print(f"excitation statistics: {npz}")
    for path in [*inter, *intra]:
        print(f"figure: {path}")
    return 0
