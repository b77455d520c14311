"""Arguments shared by `senet tables` and `senet figures` (argparse only: cheap to import)."""

from __future__ import annotations

import argparse

from senet.flags import add_tracking_uri


def add_grid_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    """GRID..., --tracking-uri, --out and --metric."""
    p.add_argument("grids", nargs="*", metavar="GRID",
                   help="grid name (e.g. cifar10/reduction), .toml path or demo; "
                        "default: every grid with runs in MLflow")
    add_tracking_uri(p)
    p.add_argument("--out", default="results", help=out_help)
    p.add_argument("--metric", choices=["final", "best"], default="final",
                   help="error at the final epoch (default, as the paper) or the best epoch")
