"""Shared fixtures: an MLflow store that is migrated once per session, and a PostgreSQL
server for the queue tests (from SENET_TEST_POSTGRES_URL, or a local one if reachable)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

# The built-in data at a tenth of its size (1,000 training and 200 validation images): CPU
# trainings in tests spent most of their time validating and collecting excitations on
# the full 2,000. Set here, at import, so that the processes the tests start inherit it;
# test_data.py checks the full size on its own.
os.environ.setdefault("SENET_BUILTIN_PER_CLASS", "100,20")

# pytest-xdist runs the tests in one process per core (pyproject.toml). Torch in each gets
# its share of the cores: two processes each spinning a 2-thread OpenMP pool on 2 cores
# took as long as one process alone. Set before torch is imported; the processes the tests
# start inherit it.
_TEST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _TEST_PROCESSES > 1:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // _TEST_PROCESSES)))

# What `.ci/postgres.sh` creates; tried when SENET_TEST_POSTGRES_URL is not set.
LOCAL_POSTGRES_URL = "postgresql://senet:senet@127.0.0.1:5432/senet_test"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the one PostgreSQL database run in one test process, one at a time: a test
    that counts what it queued there must not see another test's tickets arrive. Long
    tests first."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("postgres"))
    # The long tests and the groups first (a stable sort): test processes take work in
    # this order, and a long test drawn last keeps one core busy while the other idles.
    items.sort(key=lambda item: not (item.get_closest_marker("slow")
                                     or item.get_closest_marker("xdist_group")))


@pytest.fixture(scope="session", autouse=True)
def _warm_server() -> None:
    """The fork server that the tests' worker processes fork from (tests/warm_procs.py),
    started first: its imports run on the second core while the first tests run."""
    import warm_procs

    warm_procs.start()


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory) -> Path:
    """Creating an MLflow SQLite store runs its schema migrations (seconds); do it once
    per test run and hand every test a copy. Under xdist the test processes share the
    folder above their own, and the first one to take the lock creates the store."""
    import fcntl

    from mlflow import MlflowClient

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    folder = shared / "mlflow-template"
    folder.mkdir(exist_ok=True)
    db = folder / "mlflow.db"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "ready").exists():
            MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
            (folder / "ready").touch()
    return db


@pytest.fixture
def tracking_uri(_mlflow_template: Path, tmp_path: Path) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_template, db)
    return f"sqlite:///{db}"


def _reachable(url: str) -> str | None:
    """None if a connection works, else why not (one line)."""
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed"
    try:
        psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"),
                         connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return str(exc).strip().splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("SENET_TEST_POSTGRES_URL")
    if url:
        problem = _reachable(url)
        if problem:
            pytest.fail(f"SENET_TEST_POSTGRES_URL is set but unusable: {problem}")
        return url
    problem = _reachable(LOCAL_POSTGRES_URL)
    if problem:
        pytest.skip(
            "no PostgreSQL server: set SENET_TEST_POSTGRES_URL or run `bash .ci/postgres.sh` "
            f"({problem})"
        )
    return LOCAL_POSTGRES_URL


@pytest.fixture
def unique_name() -> str:
    """Grid names shared storages will not have seen before."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _no_system_metrics(monkeypatch):
    """MLflow's system-metrics thread costs seconds per run and says nothing in a test."""
    monkeypatch.setenv("SENET_SYSTEM_METRICS", "0")


def quick_config(tmp_path: Path, **overrides):
    """A TrainConfig for a seconds-long CPU training with its own MLflow store at
    tmp_path/mlflow.db (request the `tracking_uri` fixture too to find it migrated)."""
    from senet.settings.config import TrainConfig

    base = dict(model="se_resnet20", dataset="builtin", preset="fast", epochs=2, batch_size=50,
                subset=200, device="cpu", out=str(tmp_path / "run"),
                tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="test")
    base.update(overrides)
    return TrainConfig(**base)


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: a process forked from this one cannot use the
    parent's OpenMP pool (it hangs), and runs compared bit for bit must sum in one order."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fork_cli(args: list[str], *, kill_self_at: str, after: bool = False) -> int:
    """Run `senet ARGS` in a process forked from this one (no second import of torch and
    MLflow; the parent's monkeypatches hold) that SIGKILLs itself on entering the
    function ``kill_self_at`` ("module.name", looked up at call time; with ``after``, as
    soon as it returns): a kill at a known point of the training. Returns minus the signal
    that ended the child, or its exit status."""
    import importlib
    import signal
    import sys

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            import torch

            from senet.cli import main

            torch.set_num_threads(1)  # libgomp's pool does not survive a fork
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
            module_name, name = kill_self_at.rsplit(".", 1)
            module = importlib.import_module(module_name)
            real = getattr(module, name)

            def die(*a, **kw):
                result = real(*a, **kw) if after else None
                os.kill(os.getpid(), signal.SIGKILL)
                return result

            setattr(module, name, die)
            os._exit(100 + main(args))
        except BaseException:  # noqa: BLE001 - any way out of the child is os._exit
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
