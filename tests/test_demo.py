"""`senet demo` end to end on a tiny grid: queue, two CPU workers, table, figures, reuse."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from senet.cli import main

TINY = """
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
def test_demo_runs_the_whole_loop_and_reuses_finished_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENET_SYSTEM_METRICS", "0")
    grid = tmp_path / "tiny.toml"
    grid.write_text(TINY)
    out = tmp_path / "out"
    args = ["demo", "--grid", str(grid), "--out", str(out), "--workers", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in printed
    table = (out / "tiny.md").read_text()
    assert "| plain" in table and "n = 1/1" in table
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert any("inter_class" in p for p in pngs) and any("error" in p for p in pngs)

    client = MlflowClient("sqlite:///mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              filter_string="tags.`senet.seed` = '0'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]

    # a second demo trains nothing new
    assert main(args) == 0
    assert "queued 0 new" in capsys.readouterr().out
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              filter_string="tags.`senet.seed` = '0'")
    assert len(runs) == 2
    assert main(["status", str(grid), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tiny"]["done"] == 2 and report["tiny"]["queued"] == 0
