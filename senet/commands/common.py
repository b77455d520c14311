"""What several commands share: their common flags, declared once, and the grid helpers
of the queue commands (argparse and the standard library only at import: cheap)."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from senet.flags import TRACKING_HELP, add_tracking_uri

STORAGE_HELP = ("queue storage: a journal file (default ./senet-queue.journal), "
                "sqlite:///FILE or postgresql://USER@HOST/DB")


def add_storage(p: argparse.ArgumentParser, help: str = STORAGE_HELP) -> None:
    p.add_argument("--storage", help=help)


def add_stores(p: argparse.ArgumentParser, tracking_help: str = TRACKING_HELP) -> None:
    """--storage and --tracking-uri: queue, work and status all take both, so that a
    script can pass the same pair to every command."""
    add_storage(p)
    add_tracking_uri(p, tracking_help)


def add_preset_override(p: argparse.ArgumentParser) -> None:
    """--preset NAME of `senet queue` and `senet plan`: every point under another protocol."""
    p.add_argument("--preset", metavar="NAME",
                   help="train every point of the grids under this preset instead of the "
                        "file's (e.g. imagenet-ablation-plateau): the grid is queued as "
                        "GRID@NAME, its own grid in the queue, MLflow and the tables; "
                        "`senet tables GRID@NAME` reads it")


def add_grid_filter(p: argparse.ArgumentParser) -> None:
    """The optional GRID of `senet work` and `senet status`."""
    p.add_argument("grid", nargs="?", metavar="GRID",
                   help="only this grid (name or .toml path); default: every queued grid")


def queue_name(spec: str) -> str:
    """The queue name of a grid as the user gave it: a name, a name with .toml, or a path."""
    from senet.settings.grid import PROTOCOL_MARK, grid_name, resolve_grid_path, split_protocol

    base, preset = split_protocol(spec)
    name = grid_name(resolve_grid_path(base)) if base.endswith(".toml") else base
    return f"{name}{PROTOCOL_MARK}{preset}" if preset else name


def grid_argument(name: str, attrs: Mapping[str, Any]) -> str:
    """What to give `senet queue` for a queued grid: its name when that finds the same file,
    else the grid file recorded when it was queued."""
    from senet.errors import SenetError
    from senet.settings.grid import PROTOCOL_MARK, resolve_grid_path, split_protocol
    from senet.tracking.store import A_GRID_FILE

    recorded = attrs.get(A_GRID_FILE)
    base, preset = split_protocol(name)
    try:
        found = resolve_grid_path(base)
    except SenetError:
        found = None
    if recorded is None or (found is not None and str(found) == str(recorded)):
        return name
    return f"{recorded}{PROTOCOL_MARK}{preset}" if preset else str(recorded)


def retry_command(grids: Iterable[tuple[str, Mapping[str, Any]]], storage: str | None) -> str:
    """`senet queue ... --retry-failed` for the failed points of ``grids`` ((name, queue
    attrs) pairs), with the storage and the MLflow store each grid was queued with."""
    from senet.tracking.store import A_TRACKING_URI, absolute_tracking_uri, resolve_uri
    from senet.urls import with_driver, without_password

    # Commands are printed without passwords: the driver finds them (PGPASSWORD, ~/.pgpass).
    default_uri = without_password(with_driver(absolute_tracking_uri(resolve_uri(None))))
    by_uri: dict[str | None, list[str]] = {}
    for name, attrs in grids:
        uri = attrs.get(A_TRACKING_URI)
        by_uri.setdefault(None if uri in (None, default_uri) else uri, []).append(
            grid_argument(name, attrs))
    commands = []
    for uri, args in by_uri.items():
        argv = ["senet", "queue", *dict.fromkeys(args), "--retry-failed"]
        if storage:
            argv += ["--storage", without_password(storage)]
        if uri:
            argv += ["--tracking-uri", without_password(uri)]
        commands.append(shlex.join(argv))
    return " && ".join(commands)
