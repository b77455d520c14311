"""Issue 23, section 2: a worker waits out a short outage of its stores (bounded, the wait
said in one line) instead of dying with hundreds of traceback lines."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import warm_procs
from conftest import wait_for
from mlflow import MlflowClient
from pg_databases import databases, set_reachable, tiny_grid

from senet.errors import SenetError
from senet.urls import with_driver
from senet.worker.outage import Outage, is_outage


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int) -> str:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return "answered"


def test_an_outage_past_its_bound_is_one_line(monkeypatch):
    said: list[str] = []
    outage = Outage(said.append, limit=0.6, poll_s=0.1)
    port = _closed_port()
    t0 = time.monotonic()
    with pytest.raises(SenetError) as err:
        outage.call("queue storage", _connect, port)
    assert 0.6 <= time.monotonic() - t0 < 10
    assert len(said) == 1 and "queue storage unreachable" in said[0]
    assert "waiting up to 1 s" in said[0]  # the bound, rounded
    assert "still unreachable after 1 s" in str(err.value) and "\n" not in str(err.value)


def test_a_store_that_comes_back_is_waited_for_and_said_twice():
    said: list[str] = []
    outage = Outage(said.append, limit=30, poll_s=0.1)
    port = _closed_port()
    server = socket.socket()

    def come_back() -> None:
        time.sleep(0.5)
        server.bind(("127.0.0.1", port))
        server.listen()

    threading.Thread(target=come_back, daemon=True).start()
    try:
        assert outage.call("queue storage", _connect, port) == "answered"
    finally:
        server.close()
    assert len(said) == 2 and "answers again after" in said[1]


def test_only_unreachable_stores_are_waited_for():
    from optuna.exceptions import StorageInternalError

    assert is_outage(StorageInternalError("x")) and is_outage(ConnectionRefusedError())
    assert not is_outage(ValueError("a bug, not an outage"))
    outage = Outage(lambda m: None, limit=30, poll_s=0.1)
    with pytest.raises(ValueError):
        outage.call("queue storage", int, "not a number")


GRID = tiny_grid(epochs=5)


@pytest.mark.slow
def test_a_worker_waits_out_a_10_s_outage_of_its_postgresql(tmp_path, postgres_url):
    """Queue and tracking on one server, both refused for 10 s (connections ended) while
    the worker trains: it says so once, says when they are back, and the point ends
    FINISHED with each epoch logged once."""
    with databases(postgres_url, "outage_q", "outage_t") as (queue_url, tracking_url):
        grid = tmp_path / "g.toml"
        grid.write_text(GRID)
        stores = ["--storage", queue_url, "--tracking-uri", tracking_url]
        assert warm_procs.Senet(["queue", str(grid), *stores], tmp_path).wait(300) == 0
        worker = warm_procs.Senet(["work", *stores, "--devices", "cpu", "--heartbeat", "1",
                                   "--grace", "60"], tmp_path)
        wait_for(lambda: worker.out_path.exists() and "epoch 1/5" in worker.stdout, 300,
                 "the first epoch")
        set_reachable(postgres_url, [queue_url, tracking_url], False)
        time.sleep(10)
        set_reachable(postgres_url, [queue_url, tracking_url], True)
        assert worker.wait(600) == 0
        out, err = worker.stdout, worker.stderr
        assert "Traceback" not in out + err
        said = [line for line in (out + err).splitlines()
                if "unreachable" in line or "answers again" in line]
        assert len(said) == 2, said
        assert "waiting up to 120 s" in said[0] and "answers again after" in said[1]
        client = MlflowClient(with_driver(tracking_url))
        exps = [e.experiment_id for e in client.search_experiments()]
        (run,) = [r for r in client.search_runs(exps, "") if "senet.role" not in r.data.tags]
        assert run.info.status == "FINISHED"
        assert not {"senet.fail_reason", "senet.stop_reason"} & set(run.data.tags)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_top1_err")]
        assert sorted(steps) == [1, 2, 3, 4, 5]
        status = warm_procs.Senet(["status", "--json", "--storage", queue_url], tmp_path)
        assert status.wait(120) == 0
        assert next(iter(json.loads(status.stdout).values()))["done"] == 1
