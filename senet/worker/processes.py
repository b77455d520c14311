"""Where worker processes come from: multiprocessing's fork server, warmed once.

A module of its own, importing nothing heavy, so that a command can start the server
before it imports torch or MLflow itself: the server's imports then overlap with its own.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any

# What a worker process imports: the fork server imports it once, and each worker forked
# from it starts at once instead of spending seconds of CPU on the same imports. A module
# that fails to import is skipped by the server (the worker then imports it itself).
WORKER_PRELOAD = (
    "torch", "optuna", "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql",
    "alembic.command", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.db.utils", "senet.worker.loop", "senet.engine.train", "senet.data.load",
)


def process_context(preload: Sequence[str] = WORKER_PRELOAD) -> Any:
    """Where worker processes come from: multiprocessing's fork server where the platform
    has one, spawn elsewhere. The fork server is a fresh interpreter, not a fork of this
    process, so no CUDA context, store connection or thread of ours is inherited."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


def start_worker_server(preload: Sequence[str] = WORKER_PRELOAD) -> None:
    """Start the fork server now, in the background, so that its imports overlap with
    whatever this process does before it starts workers (queueing, checking stores)."""
    if process_context(preload).get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
