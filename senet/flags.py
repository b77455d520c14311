"""Command-line flags that both senet's commands and the analysis package declare
(argparse only: cheap to import, and below both)."""

from __future__ import annotations

import argparse

TRACKING_HELP = "MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"


def add_tracking_uri(p: argparse.ArgumentParser, help: str = TRACKING_HELP) -> None:
    p.add_argument("--tracking-uri", help=help)
