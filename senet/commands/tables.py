"""senet tables: one results table per grid, laid out like the paper's, beside its numbers."""

from __future__ import annotations

import argparse

HELP = "write each grid's results table (Markdown, CSV, LaTeX) beside the paper's numbers"
OUT_HELP = ("output root (default results); each grid's tables go to OUT/<grid name>/, e.g. "
            "results/cifar10/reduction/reduction.md for cifar10/reduction, "
            "whether the grid is given by name or as a .toml path")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from analysis.cli_args import add_grid_arguments

    add_grid_arguments(p, OUT_HELP)
    p.add_argument("--storage", help="queue storage, to tell queued and failed seeds that have "
                                     "no MLflow run (default ./senet-queue.journal if present)")


def missing_store(tracking_uri: str | None) -> str | None:
    """The local SQLite file behind ``tracking_uri`` if it does not exist: opening it would
    create an empty store (and print MLflow's migration log) in the user's folder."""
    from senet.tracking.store import resolve_uri
    from senet.urls import sqlite_path

    path = sqlite_path(resolve_uri(tracking_uri))
    return None if path is None or path.exists() else str(path)


def nothing_to(verb: str, why: str, grids: list[str]) -> None:
    """Say there is nothing to ``verb``: for grids the user named, an error (one line, exit
    2, no files written); for "every grid" in an empty store, just a line."""
    from senet.errors import SenetError

    if grids:
        raise SenetError(f"nothing to {verb}: {why}")
    print(f"nothing to {verb}: {why}")


def open_grids(tracking_uri: str | None, grids: list[str], verb: str):
    """(MLflow client, grid names) to report on, or None after saying there is nothing to
    ``verb`` (no local store, or no grid runs in it)."""
    absent = missing_store(tracking_uri)
    if absent:
        nothing_to(verb, f"no MLflow store at {absent} (run a grid first, or pass "
                         "--tracking-uri)", grids)
        return None
    from analysis.runs import grid_names, open_client

    client = open_client(tracking_uri)
    names = list(grids) or grid_names(client)
    if not names:
        from senet.urls import redact

        nothing_to(verb, f"no grid runs in {redact(client.tracking_uri)}", grids)
        return None
    return client, names


def never_run(items, tracking_uri: str, verb: str, queue=None) -> None:
    """Refuse, before any file is written, a named grid with no run in the store (and,
    given the ``queue`` reader, none queued either): its output would be all gaps."""
    from senet.errors import SenetError

    for item in items:
        name = item.spec.name
        if not item.runs.empty or (queue is not None and queue.for_grid(name)[0] is not None):
            continue
        where = "" if queue is None else f" and is not in the queue at {queue.where}"
        raise SenetError(
            f"nothing to {verb}: grid {name} has no runs in {tracking_uri}{where}; run it "
            f"first (senet queue {name} && senet work {name}), or pass the --tracking-uri "
            f"{'and --storage ' if queue is not None else ''}it was run with")


def results_view(client, tracking_uri: str | None, grid: str, top5: bool) -> list[str]:
    """The lines that open the grid's saved MLflow view (made now if it is missing, e.g.
    for a grid queued by an older senet); none when the grid has no experiment."""
    from senet.tracking.store import absolute_tracking_uri, resolve_uri
    from senet.tracking.views import ensure_results_view, view_lines

    experiment = client.get_experiment_by_name(grid)
    if experiment is None:
        return []
    ensure_results_view(client, experiment.experiment_id, top5)
    return view_lines(absolute_tracking_uri(resolve_uri(tracking_uri)), experiment.experiment_id)


def run(args: argparse.Namespace) -> int:
    opened = open_grids(args.tracking_uri, args.grids, "tabulate")
    if opened is None:
        return 0
    client, names = opened
    from analysis.collect import gather
    from analysis.paper import load_paper_numbers
    from analysis.queue_status import QueueReader
    from analysis.table_render import write_table
    from analysis.tables import build_table

    book = load_paper_numbers()
    queue = QueueReader(args.storage)
    items = gather(client, names)
    if args.grids:
        never_run(items, client.tracking_uri, "tabulate", queue)
    for item in items:
        lookup, queue_note = queue.for_grid(item.spec.name)
        table = build_table(item.spec, item.runs, book, metric=args.metric, queue=lookup)
        if queue_note:
            table.notes.append(f"Queue: {queue_note}; seeds with no MLflow run show as 'no run'.")
        paths = write_table(table, args.out)
        rows = table.rows
        done = int(rows["n"].sum())
        expected = int(rows["n_expected"].sum())
        print(f"{item.spec.name}: {len(rows)} variants, {done}/{expected} seeds finished")
        for path in paths:
            print(f"  {path}")
        for line in results_view(client, args.tracking_uri, item.spec.name, table.shows_top5):
            print(line)
    return 0
