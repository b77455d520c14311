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
    from senet.queue.storage import sqlite_path
    from senet.tracking.store import resolve_uri

    path = sqlite_path(resolve_uri(tracking_uri))
    return None if path is None or path.exists() else str(path)


def open_grids(tracking_uri: str | None, grids: list[str], verb: str):
    """(MLflow client, grid names) to report on, or None after saying there is nothing to
    ``verb`` (no local store, or no grid runs in it)."""
    absent = missing_store(tracking_uri)
    if absent:
        print(f"nothing to {verb}: no MLflow store at {absent} (run a grid first, "
              "or pass --tracking-uri)")
        return None
    from analysis.runs import grid_names, open_client

    client = open_client(tracking_uri)
    names = list(grids) or grid_names(client)
    if not names:
        from senet.queue.storage import redact

        print(f"nothing to {verb}: no grid runs in {redact(client.tracking_uri)}")
        return None
    return client, names


def dashboard_url(server: str, experiment_id: str) -> str:
    """The experiment's runs in MLflow's model-training view, one chart per metric.

    MLflow 3.17's UI opens an experiment in its GenAI view unless the URL (or the browser's
    last choice) says otherwise, and its runs table shows no metric column until one is
    picked; the chart view shows every metric of every run without a click.
    """
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
            "?workflowType=machine_learning&compareRunsMode=CHART")


def dashboard_line(client, tracking_uri: str | None, grid: str) -> str | None:
    """`dashboard: URL` of the grid's experiment when the runs are on an MLflow server."""
    from senet.tracking.store import resolve_uri

    uri = resolve_uri(tracking_uri)
    if not uri.startswith(("http://", "https://")):
        return None
    experiment = client.get_experiment_by_name(grid)
    if experiment is None:
        return None
    return f"  dashboard: {dashboard_url(uri, experiment.experiment_id)}"


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
    for item in gather(client, names):
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
        link = dashboard_line(client, args.tracking_uri, item.spec.name)
        if link:
            print(link)
    return 0
