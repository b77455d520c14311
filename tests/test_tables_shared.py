"""Issue 23, section 5: the table of a grid declared with `name = "rel/ctrl"` outside
experiments/ finds its trainings that another grid's tickets trained (by training key),
whether it is named by that name or by its file."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from senet.cli import main as cli_main
from senet.queue.tickets import grid_keys
from senet.settings.grid import load_grid

GRID = """
dataset = "builtin"
preset = "fast"
model = "se_resnet20"
epochs = 1
subset = 100
seeds = [0, 1]

[axes]
reduction = [4]
"""


def _trained_under(grid_path: Path, tracking_uri: str) -> None:
    """Two FINISHED runs as the first grid's worker leaves them: its tags, its experiment,
    and the training key every grid with the same settings and seeds shares."""
    grid = load_grid(grid_path)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(grid.name).experiment_id
    for (point, seed), key in grid_keys(grid, grid.seeds).items():
        tags = {"senet.grid": grid.name, "senet.point": point, "senet.seed": str(seed),
                "senet.label": "reduction=4", "senet.key": key}
        run = client.create_run(exp, tags=tags)
        for name, value in (("final_val_top1_err", 30.0 + seed), ("final_val_top5_err", 5.0)):
            client.log_metric(run.info.run_id, name, value)
        client.set_terminated(run.info.run_id, "FINISHED")


def test_tables_of_a_declared_name_outside_experiments_find_shared_trainings(
        tmp_path, tracking_uri, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = tmp_path / "a" / "reduction.toml"
    first.write_text(GRID)
    ctrl = tmp_path / "b" / "ctrl.toml"
    ctrl.write_text('name = "rel/ctrl"\n' + GRID)
    stores = ["--tracking-uri", tracking_uri, "--storage", str(tmp_path / "q.journal")]
    assert cli_main(["queue", str(first), *stores]) == 0
    assert cli_main(["queue", str(ctrl), *stores]) == 0
    _trained_under(first, tracking_uri)
    capsys.readouterr()
    for spec in ("rel/ctrl", str(ctrl)):
        assert cli_main(["tables", spec, "--tracking-uri", tracking_uri, "--out",
                         str(tmp_path / "results")]) == 0
        assert "rel/ctrl: 1 variants, 2/2 seeds finished" in capsys.readouterr().out
    assert (tmp_path / "results" / "rel" / "ctrl" / "ctrl.md").is_file()
