"""What a new user meets in the first hour (issue 22), through the real commands: every
mistake is one line that says what to do, with a non-zero exit and nothing left behind;
checks happen when a grid is queued, not when its workers start; and the MLflow view
that senet saves with each grid opens on the numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import fake_cifar10

from senet.cli import main

GRID = """
name = "tiny"
title = "tiny"
dataset = "{dataset}"
preset = "fast"
model = "{model}"
epochs = 1
subset = 100
batch_size = 50
workers = 0
seeds = [0]
[axes]
reduction = [4]
"""


def _error(capsys, command: str) -> str:
    """The one line on stderr, which must be senet's (no traceback, no MLflow log)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"senet {command}: error: "), lines[0]
    return lines[0]


def _grid(tmp_path: Path, dataset: str) -> Path:
    path = tmp_path / "tiny.toml"
    model = "se_resnet50" if dataset == "imagenet" else "se_resnet20"
    path.write_text(GRID.format(dataset=dataset, model=model))
    return path


# ---------------------------------------------------------------------------
# Tracking URIs: senet's own sentence, never MLflow's paragraph cut to length


@pytest.mark.parametrize(("uri", "says"), [
    ("mlfow://nowhere", "unknown scheme 'mlfow'; use sqlite:///PATH/mlflow.db"),
    ("htp://host:5000", "unknown scheme 'htp' (did you mean http://?)"),
    ("/path/track", "is a folder path, and MLflow 3 keeps runs in a database, not in folders; "
                    "use sqlite:////path/track/mlflow.db"),
    ("file:///path/track", "use sqlite:////path/track/mlflow.db"),
    ("sqlite://", "names no database file; use sqlite:///PATH/mlflow.db"),
    ("sqlite:///:memory:", "names no database file"),
    ("http://", "names no host; use http://HOST:PORT"),
])  # fmt: skip
@pytest.mark.parametrize("command", ["queue", "tables", "train"])
def test_a_bad_tracking_uri_is_one_sentence_of_senet(tmp_path, monkeypatch, capsys, uri, says,
                                                      command):
    monkeypatch.chdir(tmp_path)
    argv = {"queue": ["queue", str(_grid(tmp_path, "builtin")), "--storage", "q.journal"],
            "tables": ["tables", "tiny"],
            "train": ["train", "resnet20", "--epochs", "1", "--subset", "100",
                      "--batch-size", "50", "--out", "run"]}[command]
    assert main([*argv, "--tracking-uri", uri]) == 2
    line = _error(capsys, command)
    assert f"--tracking-uri {uri}" in line and says in line
    assert "Supported URI schemes" not in line and "maintenance mode" not in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "q.journal").exists()


def test_a_sqlite_uri_naming_a_folder_and_a_bad_environment_variable(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["tables", "--tracking-uri", f"sqlite:///{tmp_path}"]) == 2
    assert f"is a folder, not a database file; use sqlite:///{tmp_path}/mlflow.db" in _error(
        capsys, "tables")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mlfow://x")
    assert main(["queue", str(_grid(tmp_path, "builtin"))]) == 2
    assert "MLFLOW_TRACKING_URI=mlfow://x: unknown scheme 'mlfow'" in _error(capsys, "queue")


def test_a_file_that_is_not_a_store_and_a_server_that_is_down(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.db").write_text("not a database")
    assert main(["tables", "--tracking-uri", "sqlite:///notes.db"]) == 2
    line = _error(capsys, "tables")
    assert line.endswith("notes.db cannot be opened (file is not a database); give "
                         "--tracking-uri an MLflow store: sqlite:///PATH/mlflow.db or "
                         "http://HOST:PORT")
    assert main(["tables", "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert _error(capsys, "tables").endswith(
        "cannot reach MLflow tracking server http://127.0.0.1:9: nothing answers there; start "
        "it (mlflow server --host HOST --port PORT) or give another --tracking-uri")


# ---------------------------------------------------------------------------
# describe --input-size


@pytest.mark.parametrize("size", ["-5", "0", "100000"])
def test_describe_refuses_an_input_size_that_is_not_a_size(capsys, size):
    assert main(["describe", "se_resnet50", "--input-size", size]) == 2
    assert f"--input-size {size}: expected a side in pixels from 1 to 4096" in _error(
        capsys, "describe")


def test_describe_counts_at_the_size_given(capsys):
    assert main(["describe", "resnet20", "--input-size", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input_size"] == 64 and info["gmacs"] == pytest.approx(4 * 0.0409, abs=1e-3)


# ---------------------------------------------------------------------------
# A storage that does not exist: only `senet queue` creates one


@pytest.mark.parametrize("argv", [["status"], ["work"], ["plan", "demo"]])
@pytest.mark.parametrize("storage", ["nope.journal", "sqlite:///nope.db"])
def test_a_missing_storage_is_an_error_naming_it(tmp_path, monkeypatch, capsys, argv, storage):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--storage", storage]) == 2
    line = _error(capsys, argv[0])
    assert "no queue at nope." in line and "the file does not exist (only `senet queue` " \
        "creates one)" in line and f"--storage {storage}" in line
    assert list(tmp_path.iterdir()) == []


def test_status_in_a_folder_with_no_queue_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    assert "no queue at senet-queue.journal: nothing has been queued in this folder yet" in \
        _error(capsys, "status")
    assert main(["plan", "demo"]) == 0  # pricing a grid before queueing it is plan's job
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# Data checked at queue time


def test_queue_refuses_a_cifar_grid_without_its_data(tmp_path, monkeypatch, capsys,
                                                      tracking_uri):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENET_OFFLINE", "1")  # this machine cannot download it either
    monkeypatch.delenv("SENET_DATA", raising=False)
    grid = str(_grid(tmp_path, "cifar10"))
    stores = ["--storage", "q.journal", "--tracking-uri", tracking_uri]
    assert main(["queue", grid, *stores]) == 2
    line = _error(capsys, "queue")
    assert "cifar10: no data under data (missing data/cifar-10-batches-py/data_batch_1); put " \
        "cifar-10-python.tar.gz" in line
    assert line.endswith("give senet queue and senet work that --data-root")
    assert not (tmp_path / "q.journal").exists()
    # The workers' --data-root, given to queue too: found there, queued.
    fake_cifar10(tmp_path / "elsewhere")
    assert main(["queue", grid, *stores, "--data-root", "elsewhere"]) == 0
    assert "tiny: 1 points x 1 seeds; queued 1 new" in capsys.readouterr().out


def test_queue_checks_imagenet_train_and_val(tmp_path, monkeypatch, capsys, tracking_uri):
    monkeypatch.chdir(tmp_path)
    grid = str(_grid(tmp_path, "imagenet"))
    stores = ["--storage", "q.journal", "--tracking-uri", tracking_uri]
    assert main(["queue", grid, *stores]) == 2
    assert "imagenet: no data root given; pass --data-root DIR with train/ and val/ (to senet " \
        "queue and to senet work)" in _error(capsys, "queue")
    (tmp_path / "in" / "train").mkdir(parents=True)
    assert main(["queue", grid, *stores, "--data-root", "in"]) == 2
    assert "imagenet: missing split directory in/val" in _error(capsys, "queue")
    assert not (tmp_path / "q.journal").exists()
    (tmp_path / "in" / "val").mkdir()
    assert main(["queue", grid, *stores, "--data-root", "in"]) == 0


# ---------------------------------------------------------------------------
# Tables and figures of a grid that never ran


@pytest.mark.parametrize(("command", "verb"), [("tables", "tabulate"), ("figures", "draw")])
def test_a_grid_never_queued_has_nothing_to_show(tmp_path, monkeypatch, capsys, tracking_uri,
                                                  command, verb):
    monkeypatch.chdir(tmp_path)
    assert main([command, "cifar10/gate", "--tracking-uri", tracking_uri, "--out", "res"]) == 2
    line = _error(capsys, command)
    assert f"nothing to {verb}: grid cifar10/gate has no runs in {tracking_uri}" in line
    assert "senet queue cifar10/gate && senet work cifar10/gate" in line
    assert not (tmp_path / "res").exists()
    # No grid named and no store: a line and exit 0, as before
    assert main([command, "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 0
    assert capsys.readouterr().out.startswith(f"nothing to {verb}: no MLflow store at ")
    assert main([command, "cifar10/gate", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2


def test_a_queued_grid_without_runs_still_gets_its_table(tmp_path, monkeypatch, capsys,
                                                          tracking_uri):
    monkeypatch.chdir(tmp_path)
    grid = str(_grid(tmp_path, "builtin"))
    assert main(["queue", grid, "--storage", "q.journal", "--tracking-uri", tracking_uri]) == 0
    capsys.readouterr()
    assert main(["tables", grid, "--storage", "q.journal", "--tracking-uri", tracking_uri,
                 "--out", "res"]) == 0
    assert "tiny: 1 variants, 0/1 seeds finished" in capsys.readouterr().out
    assert "queued" in (tmp_path / "res" / "tiny" / "tiny.md").read_text()


# ---------------------------------------------------------------------------
# The saved view


def test_queue_saves_a_view_of_the_numbers_and_prints_how_to_open_it(tmp_path, monkeypatch,
                                                                     capsys, tracking_uri):
    from mlflow import MlflowClient

    from senet.tracking.views import MAX_TAG_VALUE, VIEW_ID, VIEW_TAG_PREFIX

    monkeypatch.chdir(tmp_path)
    grid = str(_grid(tmp_path, "builtin"))
    assert main(["queue", grid, "--storage", "q.journal", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out.splitlines()
    experiment = MlflowClient(tracking_uri).get_experiment_by_name("tiny")
    i = out.index(f"  results view: run `mlflow ui --backend-store-uri {tracking_uri}`, then open")
    assert out[i + 1] == (f"    http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}"
                          f"/runs?viewStateShareKey={VIEW_ID}&compareRunsMode=TABLE"
                          "&workflowType=machine_learning")
    tag = experiment.tags[VIEW_TAG_PREFIX + VIEW_ID]
    assert len(tag) <= MAX_TAG_VALUE
    envelope = json.loads(tag)
    assert envelope["name"] == "senet: errors, params, GMACs by variant"
    assert isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    # 10 classes: top-5 is left out
    assert state["selectedColumns"] == [
        "metrics.`final_val_top1_err`", "metrics.`best_val_top1_err`", "metrics.`params`",
        "metrics.`gmacs`", "tags.`senet.label`"]
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "senet.label"}]
    # Queuing again leaves the view as it is
    assert main(["queue", grid, "--storage", "q.journal", "--tracking-uri", tracking_uri]) == 0
    again = MlflowClient(tracking_uri).get_experiment_by_name("tiny")
    assert again.tags[VIEW_TAG_PREFIX + VIEW_ID] == tag


def test_the_view_shows_top5_only_where_it_says_something():
    from senet.tracking.views import shows_top5, view_lines, view_state

    assert not shows_top5(10) and shows_top5(100) and shows_top5(None)  # None: ImageNet
    columns = view_state(True)["selectedColumns"]
    assert "metrics.`final_val_top5_err`" in columns and "metrics.`best_val_top5_err`" in columns
    assert view_lines("http://mlflow.lab:5000", "7") == [
        "  results view: http://mlflow.lab:5000/#/experiments/7/runs?viewStateShareKey="
        "senet-results&compareRunsMode=TABLE&workflowType=machine_learning"]


@pytest.mark.slow
def test_work_ends_with_the_view_of_what_it_worked(tmp_path, monkeypatch, capsys, tracking_uri):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # restored after the test
    grid = str(_grid(tmp_path, "builtin"))
    stores = ["--storage", "q.journal", "--tracking-uri", tracking_uri]
    assert main(["queue", grid, *stores]) == 0
    queued = capsys.readouterr().out.splitlines()
    assert main(["work", *stores, "--devices", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    view = [line for line in queued if "results view" in line or "viewStateShareKey" in line]
    assert len(view) == 2 and out[-3:] == ["tiny:", *view]
