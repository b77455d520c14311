"""Resolve the grids a command names into (GridSpec, runs) pairs, fetching each grid once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.gridspec import GridSpec, load_spec
from analysis.runs import fetch_runs, grid_names, recorded_grid_file
from senet.errors import SenetError
from senet.urls import redact


@dataclass
class GridRuns:
    spec: GridSpec
    runs: pd.DataFrame


def gather(client: Any, grids: Sequence[str]) -> list[GridRuns]:
    """``grids``: names, .toml paths or `demo`; none means every grid with runs in MLflow."""
    cache: dict[str, pd.DataFrame] = {}

    def runs_for(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = fetch_runs(client, name)
        return cache[name]

    names = list(grids) or grid_names(client)
    if not names:
        raise SenetError(
            f"no grid runs found in MLflow ({redact(client.tracking_uri)}); name a grid, "
            "or pass --tracking-uri"
        )
    found = []
    for name in names:
        spec = load_spec(name, runs_for, lambda grid: recorded_grid_file(client, grid))
        runs = fetch_runs(client, spec.name, spec.slots) if spec.slots else runs_for(spec.name)
        found.append(GridRuns(spec, runs))
    return found
