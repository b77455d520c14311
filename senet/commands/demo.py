"""senet demo: the whole loop on the built-in dataset, from a fresh install.

Queues experiments/demo.toml, works it with one worker per CPU core, then writes its
table and figures. Finished runs are reused, so a second call only redraws the results.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HELP = "queue, train, tabulate and plot the demo grid on the built-in dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results/demo", help="table and figures (default "
                                                         "results/demo)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per CPU core, at most 4)")
    p.add_argument("--storage", help="queue storage (default ./senet-queue.journal)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    p.add_argument("--grid", default="demo", help="grid to run (default demo)")


def run(args: argparse.Namespace) -> int:
    from senet.cli import main
    from senet.errors import SenetError
    from senet.tracking import resolve_uri

    workers = args.workers or max(1, min(4, os.cpu_count() or 1))
    if workers < 1:
        raise SenetError("--workers must be >= 1")
    stores: list[str] = []
    if args.storage:
        stores += ["--storage", args.storage]
    uri = resolve_uri(args.tracking_uri)
    stores += ["--tracking-uri", uri]
    started = time.monotonic()

    def step(title: str, argv: list[str]) -> None:
        print(f"\n== {title}: senet {' '.join(argv)}", flush=True)
        code = main(argv)
        if code:
            raise SenetError(f"demo stopped: `senet {' '.join(argv)}` exited with {code}")

    step("1/4 queue", ["queue", args.grid, *stores])
    step(f"2/4 train ({workers} CPU workers)",
         ["work", args.grid, *stores, "--devices", ",".join(["cpu"] * workers)])
    step("3/4 table", ["tables", args.grid, "--out", args.out, *stores])
    step("4/4 figures", ["figures", args.grid, "--out", args.out, "--tracking-uri", uri])

    out = Path(args.out)
    tables = sorted(out.glob("*.md"))
    figures = sorted((out / "figures").glob("*.png"))
    print(f"\ndemo done in {time.monotonic() - started:.0f} s")
    for path in tables:
        print(f"  table:  {path}")
    print(f"  figures ({len(figures)} PNG, with PDFs beside them): {out / 'figures'}")
    if uri.startswith("sqlite:"):
        print(f"browse the runs:  mlflow ui --backend-store-uri {uri}")
    else:
        print(f"browse the runs at {uri}")
    return 0
