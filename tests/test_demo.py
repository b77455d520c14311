"""`senet demo` end to end on a tiny grid: queue, two CPU workers, table, figures, reuse."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from senet.cli import main
from senet.commands.demo import output_root
from senet.data.builtin import builtin_data
from senet.data.load import load_data

TINY = """
name = "tiny"
title = "tiny demo"
paper_table = "reduction"
baseline = "SE"
dataset = "builtin"
preset = "fast"
model = "se_resnet20"
epochs = 1
subset = 200
batch_size = 50
workers = 0
seeds = [0]

[[variants]]
label = "plain"
model = "resnet20"

[[variants]]
label = "SE"
reduction = 16
"""


@pytest.mark.slow
def test_demo_runs_the_whole_loop_and_reuses_finished_runs(tmp_path, monkeypatch, capsys,
                                                          _mlflow_template):
    monkeypatch.chdir(tmp_path)
    # The demo's default store, already migrated (a new one is tested in test_train_faults)
    shutil.copy(_mlflow_template, tmp_path / "mlflow.db")
    monkeypatch.setenv("SENET_SYSTEM_METRICS", "0")
    # Set after the session's fork server started: the worker processes forked from it
    # must still train on the data this names, which the runs' dataset digest shows.
    monkeypatch.setenv("SENET_BUILTIN_PER_CLASS", "30,6")
    grid = tmp_path / "tiny.toml"
    grid.write_text(TINY)
    out = tmp_path / "out"
    args = ["demo", "--grid", str(grid), "--out", str(out), "--workers", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in printed
    table = (out / "tiny" / "tiny.md").read_text()  # ROOT/<grid name>/
    assert "| plain" in table and "n = 1/1" in table
    # enough digits for SE's 2,373 extra parameters to show
    assert "| 0.272M |" in table and "| 0.275M |" in table
    assert f"results in {out / 'tiny'}/" in printed
    pngs = sorted(p.name for p in (out / "tiny" / "figures").glob("*.png"))
    assert any("inter_class" in p for p in pngs) and any("error" in p for p in pngs)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # absolute: MLflow caches by URI
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              filter_string="tags.`senet.seed` = '0'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    builtin_data.cache_clear()  # this process may hold the session's size
    try:
        digest = load_data("builtin", root=None, device="cpu", subset=200, seed=0,
                           batch_size=50).digest
    finally:
        builtin_data.cache_clear()  # leave no 30,6 data behind for later tests
    assert {r.inputs.dataset_inputs[0].dataset.digest for r in runs} == {digest[:36]}

    # a second demo trains nothing new; without --out it leaves an existing results/tiny/
    # (the committed output in a checkout) alone and says where it wrote instead
    kept = tmp_path / "results" / "tiny" / "tiny.md"
    kept.parent.mkdir(parents=True)
    kept.write_text("committed")
    # one worker: in this process, no spawned interpreter just to find the queue empty
    assert main(["demo", "--grid", str(grid), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "already done; nothing queued" in printed and "left as it is" in printed
    assert kept.read_text() == "committed"
    fresh = sorted((tmp_path / "demo-results").glob("*/tiny/tiny.md"))
    assert len(fresh) == 1 and "| plain" in fresh[0].read_text()
    # the same runs and code again: the same folder, and it says so
    assert main(["demo", "--grid", str(grid), "--workers", "1"]) == 0
    folder = fresh[0].parents[1].relative_to(tmp_path)
    assert f"reusing {folder}/: drawn from the same runs and code" in capsys.readouterr().out
    assert sorted((tmp_path / "demo-results").glob("*/tiny/tiny.md")) == fresh
    # other code (or runs): a new folder, saying why not the old one
    stamp = json.loads((fresh[0].parent / ".senet-demo.json").read_text())
    root, why = output_root(None, False, "tiny", {**stamp, "code": "other"})
    assert root != folder and why == (f"new folder {root}/: the code changed since "
                                      f"{folder}/ was drawn")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              filter_string="tags.`senet.seed` = '0'")
    assert len(runs) == 2
    assert main(["status", str(grid), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tiny"]["done"] == 2 and report["tiny"]["queued"] == 0


def test_a_failing_step_reports_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--grid", "no_such_grid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("senet demo: error:") and "no_such_grid" in err[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_tables_and_figures_in_an_empty_folder(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["tables"]) == 0
    assert main(["figures"]) == 0
    out, err = capfd.readouterr()
    assert out.splitlines() == [
        "nothing to tabulate: no MLflow store at mlflow.db (run a grid first, or pass "
        "--tracking-uri)",
        "nothing to draw: no MLflow store at mlflow.db (run a grid first, or pass "
        "--tracking-uri)",
    ]
    assert "INFO" not in err and list(tmp_path.iterdir()) == []
