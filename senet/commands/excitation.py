"""senet excitation: the paper's Figs. 6 and 7 from a trained or released model,
on a local ImageNet-style validation folder, without any training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "draw the excitation figures (paper Figs. 6/7) from weights on a validation folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="se_resnet50", help="an se_ model (default se_resnet50)")
    p.add_argument("--weights", help="released SE-ResNet weights or a senet weights.pt; "
                                     "without it the model is randomly initialised (dry run)")
    p.add_argument("--data", required=True, help="validation folder: DIR/<wnid>/<images>")
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


class _Images:
    """Resize-256 / centre-crop-224 images as normalised tensors (the eval transform)."""

    def __init__(self, files: list[str], labels: list[int], size: int) -> None:
        self.files, self.labels, self.size = files, labels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        import torch

        from senet.data.images import open_rgb, resize_center_crop

        img = resize_center_crop(open_rgb(self.files[i]), round(self.size * 8 / 7), self.size)
        return torch.from_numpy(img).permute(2, 0, 1), self.labels[i]


def _read_synsets(path: str | None) -> dict[str, str]:
    from senet.errors import SenetError

    if not path:
        return {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SenetError(f"--synsets {path}: {exc.strerror}") from None
    names = {}
    for line in lines:
        wnid, _, rest = line.strip().partition(" ")
        if wnid:
            names[wnid] = rest.split(",")[0].strip()
    return names


def run(args: argparse.Namespace) -> int:
    import torch

    from analysis.excitation_io import ExcitationStats, save_excitation_stats
    from analysis.excitation_select import PAPER_CLASSES
    from analysis.figures import plot_inter_class, plot_intra_class
    from senet.config import parse_sets
    from senet.data.scan import scan_split
    from senet.data.streaming import IMAGENET_MEAN, IMAGENET_STD
    from senet.errors import SenetError
    from senet.models import build, se_blocks
    from senet.probe import excitation_stats
    from senet.train import pick_device

    if args.per_class < 1:
        raise SenetError("--per-class must be >= 1")
    split = scan_split(Path(args.data))
    names = {**_read_synsets(args.synsets), **PAPER_CLASSES}
    by_name = {n: w for w, n in names.items()}
    wanted = None
    if args.classes:
        wanted = []
        for item in (c.strip() for c in args.classes.split(",") if c.strip()):
            wnid = item if item in split.class_names else by_name.get(item)
            if wnid is None or wnid not in split.class_names:
                raise SenetError(
                    f"--classes: {item!r} is not a class folder of {args.data}"
                    + ("" if item in split.class_names or item in by_name else
                       " (name it by wnid, or pass --synsets to map names)")
                )
            wanted.append(wnid)

    # Up to --per-class images of every class: the all-class mean needs them all.
    taken: dict[int, int] = {}
    files, labels = [], []
    for f, y in zip(split.files, split.labels, strict=True):
        if taken.get(y, 0) < args.per_class:
            taken[y] = taken.get(y, 0) + 1
            files.append(f)
            labels.append(y)

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

    loader = torch.utils.data.DataLoader(
        _Images(files, labels, args.size), batch_size=args.batch_size,
        num_workers=args.workers, pin_memory=device.type == "cuda")
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255

    tty = sys.stderr.isatty()

    def batches():
        done = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True).float().sub_(mean).div_(std)
            yield x.contiguous(memory_format=torch.channels_last), y
            done += len(y)
            if tty:
                print(f"\r{done}/{len(files)} images", end="", file=sys.stderr, flush=True)
        start = "\r" if tty else ""
        print(f"{start}{done} images of {len(taken)} classes", file=sys.stderr)

    stats = ExcitationStats.from_mapping(excitation_stats(model, batches(), split.class_names))
    out = Path(args.out)
    npz = save_excitation_stats(out / "excitation_stats.npz", stats)
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
