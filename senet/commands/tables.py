"""senet tables: one results table per grid, laid out like the paper's, beside its numbers."""

from __future__ import annotations

import argparse

HELP = "write each grid's results table (Markdown, CSV, LaTeX) beside the paper's numbers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from analysis.cli_args import add_grid_arguments

    add_grid_arguments(p, "output root; tables go to OUT/<dataset>/<grid>.{md,csv,tex}")
    p.add_argument("--storage", help="queue storage, to tell queued and failed seeds that have "
                                     "no MLflow run (default ./senet-queue.journal if present)")


def run(args: argparse.Namespace) -> int:
    from analysis.collect import gather
    from analysis.paper import load_paper_numbers
    from analysis.queue_status import QueueReader
    from analysis.runs import open_client
    from analysis.table_render import write_table
    from analysis.tables import build_table

    client = open_client(args.tracking_uri)
    book = load_paper_numbers()
    queue = QueueReader(args.storage)
    for item in gather(client, args.grids):
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
    return 0
