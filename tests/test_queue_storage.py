"""The contract of senet.queue.store.TicketStore, the queue's only door to Optuna's
storage, run against every storage kind: a journal file, SQLite and (when a server is
available, see conftest.postgres_url) PostgreSQL. An Optuna upgrade that changes any of
these behaviours fails here first."""

from __future__ import annotations

import pytest

from senet.errors import TicketFinished
from senet.queue.storage import open_storage
from senet.queue.store import TicketStore


@pytest.fixture(params=["journal", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path) -> str:
    if request.param == "journal":
        return str(tmp_path / "q.journal")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'q.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def stores(storage_url, unique_name):
    """Two stores on one storage, as two worker processes would hold; the study is
    deleted afterwards so a shared server keeps no test data."""
    a, b = TicketStore(open_storage(storage_url)), TicketStore(open_storage(storage_url))
    yield a, b, unique_name
    study = a.study_id(unique_name)
    if study is not None:
        a.delete_study(study)


def test_studies(stores):
    a, b, name = stores
    assert a.study_id(name) is None
    study, created = a.create_study(name)
    assert created is True
    assert b.create_study(name) == (study, False)  # a second creator gets the same study
    assert b.study_id(name) == study
    assert name not in a.study_names(with_attr="senet.grid")
    a.set_study_attr(study, "senet.grid", name)
    a.set_study_attr(study, "senet.points", {"p": {"label": "it's"}})
    assert name in b.study_names(with_attr="senet.grid")
    assert b.study_attrs(study) == {"senet.grid": name, "senet.points": {"p": {"label": "it's"}}}


def test_tickets_are_created_waiting_and_found_by_number(stores):
    a, b, name = stores
    study, _ = a.create_study(name)
    ids = [a.add_waiting(study, {"senet.point": f"p{i}", "senet.seed": i}) for i in range(3)]
    trials = b.trials(study)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state.name for t in trials] == ["WAITING"] * 3
    assert [t.user_attrs["senet.point"] for t in trials] == ["p0", "p1", "p2"]
    assert [b.trial_id(study, t.number) for t in trials] == ids
    assert b.trial(ids[2]).user_attrs == {"senet.point": "p2", "senet.seed": 2}


def test_a_claim_has_exactly_one_winner(stores):
    a, b, name = stores
    study, _ = a.create_study(name)
    trial = a.add_waiting(study, {"senet.point": "p"})
    assert a.claim(trial) is True
    assert b.claim(trial) is False  # another process, same ticket
    assert a.claim(trial) is False  # RUNNING -> RUNNING is no transition either
    assert b.trial(trial).state.name == "RUNNING"


def test_finishing_is_atomic_and_final(stores):
    a, b, name = stores
    study, _ = a.create_study(name)
    done, failed, pruned = (a.add_waiting(study, {"senet.point": p}) for p in "xyz")
    for trial in (done, failed, pruned):
        assert a.claim(trial)
    b.set_trial_attr(done, "senet.heartbeat", 12.5)
    assert a.finish(done, "COMPLETE", 3.25) is True
    assert b.finish(done, "FAIL") is False  # the second finisher loses
    assert a.finish(failed, "FAIL") is True
    assert a.finish(pruned, "PRUNED") is True
    with pytest.raises(TicketFinished):
        b.set_trial_attr(done, "senet.heartbeat", 13.0)  # a reaped worker learns it lost
    assert b.claim(done) is False
    finished = {t.number: t for t in b.trials(study)}
    assert [finished[n].state.name for n in (0, 1, 2)] == ["COMPLETE", "FAIL", "PRUNED"]
    assert finished[0].value == 3.25 and finished[0].user_attrs["senet.heartbeat"] == 12.5
    assert finished[0].datetime_start is not None and finished[0].datetime_complete is not None
