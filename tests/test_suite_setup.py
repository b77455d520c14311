"""How the suite runs in parallel (pyproject.toml's addopts, tests/conftest.py): what the
other tests rely on when pytest-xdist spreads them over test processes."""

from __future__ import annotations

import os

import pytest
import torch

UNDER_XDIST = bool(os.environ.get("PYTEST_XDIST_WORKER"))


@pytest.mark.xdist_group("probe")
@pytest.mark.skipif(not UNDER_XDIST, reason="runs in one process (-n0): nothing is grouped")
def test_a_marked_group_reaches_the_scheduler(request):
    # The PostgreSQL tests and test_analysis.py rely on xdist_group keeping them in one
    # process; xdist sees a group only through this suffix of the node id.
    assert request.node.nodeid.endswith("@probe")


def test_postgres_tests_are_put_in_one_group(request):
    session_items = request.session.items
    on_postgres = [i for i in session_items if "postgres_url" in i.fixturenames]
    if not on_postgres:
        pytest.skip("no PostgreSQL test is in this session")
    assert all(i.get_closest_marker("xdist_group").args == ("postgres",)
               for i in on_postgres)


@pytest.mark.skipif(not UNDER_XDIST, reason="runs in one process (-n0)")
def test_torch_gets_its_share_of_the_cores():
    processes = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    expected = int(os.environ.get("OMP_NUM_THREADS", max(1, (os.cpu_count() or 1) // processes)))
    assert torch.get_num_threads() == expected
