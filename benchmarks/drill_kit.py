"""What every fault-drill case uses: the `senet` CLI run as a user would (in a fresh
folder, with the drill's small built-in data), its one-line error, and the runs it left in
MLflow. benchmarks/fault_drill.py holds the cases and the report."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PY = sys.executable
# The drill checks what is recorded, not accuracy: 300 training and 20 validation images
# per class of the built-in data keep each case's trainings to seconds.
DRILL_ENV = {"SENET_SYSTEM_METRICS": "0", "PYTHONUNBUFFERED": "1",
             "SENET_BUILTIN_PER_CLASS": "300,20"}
TINY = ["--epochs", "1", "--subset", "200", "--batch-size", "50", "--device", "cpu"]


@dataclass
class Result:
    passed: bool
    happened: str


@dataclass
class Case:
    name: str
    expect: str
    check: Callable[[Path], Result]


# ---------------------------------------------------------------------------
# Running the CLI


def _env(cwd: Path, extra: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, **DRILL_ENV, "HOME": str(cwd), **(extra or {})}


def senet(*args: str, cwd: Path, timeout: float = 300, nobody: bool = False,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [PY, "-m", "senet", *args]
    if nobody and os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=_env(cwd, env))


def spawn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "senet", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(cwd, env),
    )


def error_line(proc: subprocess.CompletedProcess) -> str | None:
    """The one-line error, or None if the failure was not reported as one."""
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    if "Traceback" in proc.stderr or not err or proc.returncode != 2:
        return None
    last = err[-1]
    return last if ": error: " in last else None


def one_line_error(*words: str) -> Callable[[subprocess.CompletedProcess], Result]:
    """A check: exit 2, no traceback, a last line `senet X: error: ...` naming words."""

    def check(proc: subprocess.CompletedProcess) -> Result:
        line = error_line(proc)
        if line is None:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:120]
            return Result(False, f"exit {proc.returncode}, "
                                 f"{'traceback' if 'Traceback' in proc.stderr else 'no error line'}"
                                 f": {tail}")
        missing = [w for w in words if w.lower() not in line.lower()]
        return Result(not missing, line[:160] + (f" (does not name {missing})" if missing else ""))

    return check


def runs(cwd: Path, db: str = "mlflow.db") -> list:
    from senet.tracking.store import open_client

    path = cwd / db
    if not path.exists():
        return []
    # Through senet's lock: opening a store that a `senet train` is still creating would
    # otherwise race its migration (and break it, which is what case 1 is about).
    client = open_client(f"sqlite:///{path}")
    exps = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(exps, "") if r.data.tags.get("senet.role") != "grid"]


def statuses(cwd: Path, db: str = "mlflow.db") -> list[str]:
    return sorted(r.info.status for r in runs(cwd, db))


def grid_file(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


TINY_GRID = """\
    title = "{title}"
    dataset = "builtin"
    preset = "fast"
    model = "se_resnet20"
    epochs = 1
    subset = 200
    batch_size = 50
    workers = 0
    seeds = [0]

    [axes]
    reduction = {reductions}
"""
