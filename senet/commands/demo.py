"""senet demo: the whole loop on the built-in dataset, from a fresh install.

Queues experiments/demo.toml, works it with one worker per CPU core, then writes its
table and figures. Finished runs are reused, so a second call only redraws the results.
Each step runs the command's own code in this process, so an error surfaces once, from the
step that raised it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HELP = "queue, train, tabulate and plot the demo grid on the built-in dataset"
RESULTS = Path("results")
FRESH_ROOT = Path("demo-results")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="ROOT",
                   help="output root: table and figures go to ROOT/<grid name>/ (default: "
                        "results/, unless results/<grid name>/ already exists, as in a "
                        "checkout, then a fresh demo-results/<date-time>/)")
    p.add_argument("--overwrite", action="store_true",
                   help="write to results/<grid name>/ even if it exists (replaces the "
                        "committed demo output in a checkout)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per CPU core, at most 4)")
    p.add_argument("--storage", help="queue storage (default ./senet-queue.journal)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    p.add_argument("--grid", default="demo", help="grid to run (default demo)")


def output_root(out: str | None, overwrite: bool, grid_name: str) -> Path:
    """Where the tables and figures go: never over an existing results/<grid> unless asked."""
    if out:
        return Path(out)
    if overwrite or not (RESULTS / grid_name).exists():
        return RESULTS
    return FRESH_ROOT / time.strftime("%Y%m%d-%H%M%S")


def _step(title: str, command: str, argv: list[str]) -> None:
    """Run `senet COMMAND ARGV` in this process through the command's own parser, so the
    demo passes exactly what a user would type; its errors propagate as they are."""
    import importlib

    from senet.errors import SenetError

    print(f"\n== {title}: senet {command} {' '.join(argv)}", flush=True)
    module = importlib.import_module(f"senet.commands.{command}")
    parser = argparse.ArgumentParser(prog=f"senet {command}")
    module.add_arguments(parser)
    code = module.run(parser.parse_args(argv))
    if code:
        raise SenetError(f"stopped at step {title}: `senet {command}` ended with exit code "
                         f"{code} (its message is above)")


def run(args: argparse.Namespace) -> int:
    from senet.errors import SenetError
    from senet.settings.grid import load_grid
    from senet.tracking.store import resolve_uri

    if args.workers is not None and args.workers < 1:
        raise SenetError(f"--workers {args.workers}: expected at least 1")
    if args.out and args.overwrite:
        raise SenetError("give --out ROOT or --overwrite, not both")
    workers = args.workers or max(1, min(4, os.cpu_count() or 1))
    if workers > 1:
        from senet.worker.processes import start_worker_server

        start_worker_server()  # the workers' imports run while this process queues
    grid = load_grid(args.grid)  # a bad --grid fails here, before anything runs
    root = output_root(args.out, args.overwrite, grid.name)
    stores: list[str] = []
    if args.storage:
        stores += ["--storage", args.storage]
    uri = resolve_uri(args.tracking_uri)
    stores += ["--tracking-uri", uri]
    started = time.monotonic()

    _step("1/4 queue", "queue", [args.grid, *stores])
    _step(f"2/4 train ({workers} CPU workers)", "work",
          [args.grid, *stores, "--devices", ",".join(["cpu"] * workers)])
    _step("3/4 table", "tables", [args.grid, "--out", str(root), *stores])
    _step("4/4 figures", "figures", [args.grid, "--out", str(root), "--tracking-uri", uri])

    out = root / grid.name
    tables = sorted(out.glob("*.md"))
    figures = sorted((out / "figures").glob("*.png"))
    print(f"\ndemo done in {time.monotonic() - started:.0f} s; results in {out}/")
    for path in tables:
        print(f"  table:  {path}")
    print(f"  figures ({len(figures)} PNG, with PDFs beside them): {out / 'figures'}")
    if root != RESULTS and (RESULTS / grid.name).exists() and not args.out:
        print(f"  ({RESULTS / grid.name}/ already existed and was left as it is; "
              "--overwrite writes there)")
    if uri.startswith("sqlite:"):
        print(f"browse the runs:  mlflow ui --backend-store-uri {uri}")
    else:
        print(f"browse the runs at {uri}")
    return 0
