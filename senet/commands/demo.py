"""senet demo: the whole loop on the built-in dataset, from a fresh install.

Queues experiments/demo.toml, works it with one worker per CPU core, then writes its
table and figures. Finished runs are reused, so a second call only redraws the results.
Each step runs the command's own code in this process, so an error surfaces once, from the
step that raised it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

HELP = "queue, train, tabulate and plot the demo grid on the built-in dataset"
RESULTS = Path("results")
FRESH_ROOT = Path("demo-results")
STAMP_FILE = ".senet-demo.json"  # what a demo-results folder was drawn from
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds senet/ and analysis/


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="ROOT",
                   help="output root: table and figures go to ROOT/<grid name>/ (default: "
                        "results/, unless results/<grid name>/ already exists, as in a "
                        "checkout, then demo-results/<date-time>/: the one drawn from the "
                        "same runs and code if there is one, else a new one)")
    p.add_argument("--overwrite", action="store_true",
                   help="write to results/<grid name>/ even if it exists (replaces the "
                        "committed demo output in a checkout)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per CPU core, at most 4)")
    p.add_argument("--storage", help="queue storage (default ./senet-queue.journal)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    p.add_argument("--grid", default="demo", help="grid to run (default demo)")


def output_root(out: str | None, overwrite: bool, grid_name: str,
                stamp: dict[str, Any] | None = None) -> tuple[Path, str | None]:
    """Where the tables and figures go, and a line saying why there: never over an existing
    results/<grid> unless asked; then the demo-results/<date-time>/ folder drawn from the same
    runs and code (``stamp``) if there is one, else a new one."""
    if out:
        return Path(out), None
    if overwrite or not (RESULTS / grid_name).exists():
        return RESULTS, None
    previous = sorted(FRESH_ROOT.glob(f"*/{grid_name}/{STAMP_FILE}"), reverse=True)
    for path in previous:
        if stamp is not None and _read_stamp(path) == stamp:
            root = path.parents[1]
            return root, f"reusing {root}/: drawn from the same runs and code"
    root = FRESH_ROOT / time.strftime("%Y%m%d-%H%M%S")
    while root.exists():  # two demos within a second
        root = root.with_name(root.name + "+")
    if not previous:
        return root, None
    last = _read_stamp(previous[0]) or {}
    changed = [what for what in ("runs", "code") if stamp is None or last.get(what) != stamp[what]]
    return root, (f"new folder {root}/: the {' and the '.join(changed)} changed since "
                  f"{previous[0].parents[1]}/ was drawn")


def demo_stamp(uri: str, grid: Any) -> dict[str, Any]:
    """What the demo's output is drawn from: its grid's finished runs (ids and end times)
    and the code that tabulates and draws them (senet/ and analysis/ sources, the grid
    file)."""
    from senet.tracking.store import open_client

    client = open_client(uri)
    experiment = client.get_experiment_by_name(grid.name)
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], "tags.`senet.seed` IS NOT NULL", max_results=1000)
    return {"runs": sorted([r.info.run_id, r.info.status, r.info.end_time] for r in runs),
            "code": code_digest(Path(grid.path))}


def code_digest(grid_file: Path) -> str:
    digest = hashlib.sha256(grid_file.read_bytes())
    for package in ("senet", "analysis"):
        folder = PACKAGE_ROOT / package
        for path in sorted([*folder.rglob("*.py"), *folder.rglob("*.toml")]):
            digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
    stores: list[str] = []
    if args.storage:
        stores += ["--storage", args.storage]
    uri = resolve_uri(args.tracking_uri)
    stores += ["--tracking-uri", uri]
    started = time.monotonic()

    _step("1/4 queue", "queue", [args.grid, *stores])
    _step(f"2/4 train ({workers} CPU workers)", "work",
          [args.grid, *stores, "--devices", ",".join(["cpu"] * workers)])
    stamp = demo_stamp(uri, grid)
    root, why = output_root(args.out, args.overwrite, grid.name, stamp)
    if why:
        print(f"\n{why}", flush=True)
    _step("3/4 table", "tables", [args.grid, "--out", str(root), *stores])
    _step("4/4 figures", "figures", [args.grid, "--out", str(root), "--tracking-uri", uri])

    out = root / grid.name
    if root.parent == FRESH_ROOT:
        (out / STAMP_FILE).write_text(json.dumps(stamp))
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
