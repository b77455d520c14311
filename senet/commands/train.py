"""senet train: one SE variant, end to end, tracked in MLflow."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

HELP = "train one model variant and record it in MLflow"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model name, e.g. se_resnet20 (see `senet describe`)")
    p.add_argument("--dataset", default="builtin",
                   help="builtin (default), cifar10, cifar100, imagenet or folder:PATH")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. --set reduction=8 --set squeeze=max")
    p.add_argument("--preset", default="fast",
                   help="protocol: fast (default), cifar-preact, cifar-wrn, imagenet, "
                        "imagenet-ablation, or a path to your own preset .toml")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the (batch-scaled) learning rate")
    p.add_argument("--subset", type=int, help="train on the first N images, stratified")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="dataset folder (cifar10/100, imagenet)")
    p.add_argument("--out", help="run folder for checkpoint.pt and summary.json "
                                 "(default: runs/<model>-<dataset>-<hash>-s<seed>)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="senet", help="MLflow experiment name")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for ImageNet-size input on "
                        "CUDA, off otherwise; --no-compile opts out)")
    p.add_argument("--fused-se", action="store_true",
                   help="compile each SE block on its own (regional torch.compile), for a "
                        "cheaper SE on CUDA; the eager block stays the reference")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="run the step eagerly; by default it is captured once as a CUDA "
                        "graph and replayed, on CUDA with in-memory data")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bf16 autocast: auto = on for CUDA, off for CPU")
    p.add_argument("--workers", type=int, default=4, help="data loading processes (ImageNet)")


def run(args: argparse.Namespace) -> int:
    from senet.engine.train import run_training
    from senet.settings.config import TrainConfig, parse_sets
    from senet.settings.resolve import default_out

    cfg = TrainConfig(
        model=args.model, model_options=parse_sets(args.set), dataset=args.dataset,
        preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        subset=args.subset, seed=args.seed, device=args.device, data_root=args.data_root,
        out=args.out, tracking_uri=args.tracking_uri, experiment=args.experiment,
        resume=args.resume, compile=args.compile, cuda_graphs=args.cuda_graphs,
        fused_se=args.fused_se,
        amp={"auto": None, "on": True, "off": False}[args.amp], workers=args.workers,
    )
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    if cfg.resume and not (out / "checkpoint.pt").exists() and not (out / "run.json").exists():
        print(f"senet train: --resume: nothing to resume in {out} (no checkpoint yet); "
              "training from the start", flush=True)
    try:
        summary = run_training(cfg)
    except KeyboardInterrupt:
        again = ["senet", *getattr(args, "argv", ["train", args.model])]
        again += [*(["--resume"] if not cfg.resume else []),
                  *(["--out", str(out)] if not cfg.out else [])]
        print(f"senet train: interrupted; the MLflow run is KILLED and {out} keeps the last "
              f"finished epoch; continue with: {shlex.join(again)}", file=sys.stderr, flush=True)
        return 130
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    print(json.dumps({k: summary[k] for k in (
        "final_val_top1_err", "final_val_top5_err", "best_val_top1_err", "epochs_done",
        "mlflow_run_id", "status")}))
    return 0
