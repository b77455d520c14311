"""Filter strings for MLflow tag searches: values are quoted so that any label works, here
against a real temporary SQLite MLflow store."""

from __future__ import annotations

from mlflow import MlflowClient

from senet.tracking import store as tracking

LABELS = ["it's", 'say "hi"', "both ' and \"", "both _ and _", "100% plain"]


def _runs(uri: str, grid: str) -> tuple[MlflowClient, str, dict[str, str]]:
    client = MlflowClient(uri)
    exp = tracking.get_or_create_experiment(client, grid)
    ids = {}
    for i, label in enumerate(LABELS):
        tags = {tracking.A_GRID: grid, tracking.T_POINT: f"p{i}", tracking.T_SEED: "0",
                tracking.T_LABEL: label}
        ids[label] = client.create_run(exp, tags=tags).info.run_id
    return client, exp, ids


def test_find_runs_matches_each_label_exactly(tracking_uri):
    client, exp, ids = _runs(tracking_uri, "o'grid")
    for label, run_id in ids.items():
        found = tracking.find_runs(client, [exp], {tracking.A_GRID: "o'grid",
                                                   tracking.T_LABEL: label})
        assert [r.info.run_id for r in found] == [run_id], label


def test_orphan_runs_with_a_quote_in_the_label_are_closed(tracking_uri):
    # Before the filter builder quoted values, this search raised and the run stayed RUNNING.
    client, exp, ids = _runs(tracking_uri, "quotes")
    tags = {tracking.A_GRID: "quotes", tracking.T_POINT: "p0", tracking.T_SEED: "0",
            tracking.T_LABEL: "it's"}
    assert tracking.close_orphan_runs(tracking_uri, exp, tags) == 1
    status = {label: client.get_run(run_id).info.status for label, run_id in ids.items()}
    assert status == {"it's": "FAILED", **{label: "RUNNING" for label in LABELS[1:]}}
    assert tracking.close_orphan_runs(tracking_uri, exp, tags) == 0


def test_a_deleted_experiment_is_restored(tracking_uri):
    client = MlflowClient(tracking_uri)
    first = tracking.get_or_create_experiment(client, "gone")
    client.delete_experiment(first)
    assert tracking.get_or_create_experiment(client, "gone") == first
    assert client.get_experiment(first).lifecycle_stage == "active"
