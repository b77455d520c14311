"""Real processes for the queue tests, without paying for torch and MLflow imports in each.

A "spawn" process re-imports torch, MLflow and Optuna (seconds of CPU each time), and the
tests start dozens of them. Processes here are forked from multiprocessing's fork server,
a fresh interpreter (not the pytest process: no open stores or connections are inherited)
that imports those modules once per test session. Each child is still its own process,
with its own storage objects, file locks and database connections, and can be SIGKILLed.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

from senet.worker.processes import WORKER_PRELOAD, process_context, start_worker_server

# What a worker imports (senet.worker.processes), plus what `senet queue` and `senet status`
# import and the test modules whose functions the children run. A module that fails to
# import is skipped by the server.
PRELOAD = [
    *WORKER_PRELOAD, "pytest", "torch._dynamo", "PIL.Image", "git", "psycopg2",
    "senet.cli", "senet.tracking.store", "senet.queue.storage", "senet.queue.plan",
    "senet.data.folder",
    "senet.commands.queue", "senet.commands.status", "senet.commands.work", "warm_procs",
]
_numbers = itertools.count()


def context():
    """The fork-server context; the server lives as long as the test session. It is the
    one `senet work` forks its workers from (multiprocessing has one per process)."""
    return process_context(PRELOAD)


def start() -> None:
    """Start the server now, in the background: its imports take seconds of one core,
    which overlap with whatever runs until the first process is asked for."""
    start_worker_server(PRELOAD)


def _run_cli(args: list[str], cwd: str, env: dict[str, str], out: str, err: str,
             threads: int | None, barrier) -> None:
    """A child's main: `senet ARGS` as `python -m senet` runs it, with stdout and stderr
    going to files (at the file-descriptor level, so library output lands there too)."""
    os.chdir(cwd)
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from senet.cli import main

    if barrier is not None:
        barrier.wait(timeout=120)
    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class Senet:
    """`senet ARGS` in a process forked from the warm server."""

    def __init__(self, args: list[str], folder: Path, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None, threads: int | None = None,
                 barrier=None, ctx=None) -> None:
        """Output goes to files in ``folder``; the process runs in ``cwd`` (default
        ``folder``)."""
        folder.mkdir(parents=True, exist_ok=True)
        n = next(_numbers)
        self.out_path = folder / f"senet-{n}.out"
        self.err_path = folder / f"senet-{n}.err"
        self.proc = (ctx or context()).Process(
            target=_run_cli,
            args=(list(args), str(cwd or folder), dict(env or {}), str(self.out_path),
                  str(self.err_path), threads, barrier))
        self.proc.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(10)
            raise AssertionError(f"senet process {self.pid} still running after {timeout}s")
        return self.proc.exitcode

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()
