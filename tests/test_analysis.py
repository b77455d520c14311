"""Tables and figures from a real (temporary) MLflow store filled with synthetic runs.

The grid: SE-ResNet-50 on ImageNet, r in {4, 16, 32}, baseline r = 16, seeds 0-2.
  r = 16: three finished seeds (seed 0 also has an older failed attempt)
  r = 4:  seeds 0, 1 finished, seed 2 FAILED ("loss became NaN at epoch 3")
  r = 32: seeds 0, 1 finished, seed 2 never ran
The r = 32 values are 22.7 +- d with d = 0.1 * sqrt(2/3), chosen so that the Welch
degrees of freedom against the baseline (22.0, 22.1, 22.2) are exactly 2 and the
standard error exactly 0.1: the 95% CI is 0.6 +- 4.302653 * 0.1, checkable by hand.
"""

from __future__ import annotations

import math
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from analysis.excitation_select import choose_classes, pick_blocks, sample_channels
from analysis.figures import plot_inter_class, plot_intra_class
from analysis.gridspec import GridSpec, PointSpec, from_grid, from_runs
from analysis.paper import load_paper_numbers
from analysis.runs import BASE_COLUMNS, fetch_runs
from analysis.stats import summarize, t_quantile, welch_interval
from analysis.table_render import to_latex, to_markdown
from analysis.tables import build_table
from senet.cli import main as cli_main
from senet.errors import SenetError
from senet.excitation.stats import ARTIFACT_PATH, BlockStats, ExcitationStats
from senet.settings.grid import load_grid

# The module-scoped store below takes seconds to build: run this file in one test process.
pytestmark = pytest.mark.xdist_group("analysis")

GRID_TOML = """
title = "SE-ResNet-50: reduction ratio r (test)"
paper_table = "imagenet/reduction"
baseline = "reduction=16"
dataset = "imagenet"
preset = "imagenet-ablation"
model = "se_resnet50"
seeds = [0, 1, 2]

[axes]
reduction = [4, 16, 32]
"""
D = 0.1 * math.sqrt(2 / 3)
# (reduction, seed) -> (status, top1, top5); absent = never ran
RUNS = {
    (16, 0): ("FINISHED", 22.0, 6.0),
    (16, 1): ("FINISHED", 22.1, 6.1),
    (16, 2): ("FINISHED", 22.2, 6.2),
    (4, 0): ("FINISHED", 21.9, 6.3),
    (4, 1): ("FINISHED", 22.1, 6.5),
    (4, 2): ("FAILED", None, None),
    (32, 0): ("FINISHED", 22.7 - D, 6.5),
    (32, 1): ("FINISHED", 22.7 + D, 6.7),
}
FAIL_REASON = "loss became NaN at epoch 3"
PAPER_WNIDS = ["n01443537", "n02110958", "n02690373", "n09246464"]
RESNET50_BLOCKS = [f"SE_{s}_{b + 1}" for s, n in ((2, 3), (3, 4), (4, 6), (5, 3)) for b in range(n)]


def synthetic_stats(classes: list[str], blocks: dict[str, int], seed: int = 0) -> ExcitationStats:
    rng = np.random.default_rng(seed)
    stats = ExcitationStats(classes=classes)
    k = len(classes)
    for name, c in blocks.items():
        mean = rng.uniform(0.1, 0.9, (k, c)).astype(np.float32)
        count = np.arange(1, k + 1) * 10
        stats.blocks[name] = BlockStats(
            mean=mean,
            std=rng.uniform(0.01, 0.1, (k, c)).astype(np.float32),
            count=count,
            all_mean=(count @ mean / count.sum()).astype(np.float32),
        )
    return stats


@pytest.fixture(scope="module")
def store(tmp_path_factory, _mlflow_template):
    """The grid file, and an MLflow store holding its synthetic runs (in a copy of the
    session's migrated store: creating one runs MLflow's migrations, seconds)."""
    root = tmp_path_factory.mktemp("analysis")
    shutil.copy(_mlflow_template, root / "mlflow.db")
    grid_path = root / "experiments" / "imagenet" / "reduction.toml"
    grid_path.parent.mkdir(parents=True)
    grid_path.write_text(GRID_TOML)
    grid = load_grid(grid_path)
    ids = {p.settings["reduction"]: p for p in grid.points}

    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(grid.name, artifact_location=str(root / "artifacts"))
    parent = client.create_run(exp, tags={"senet.grid": grid.name, "senet.role": "grid"})
    npz = synthetic_stats(
        [*PAPER_WNIDS, "n01440764", "n01518878"],
        {b: 8 * int(b[3]) ** 2 for b in RESNET50_BLOCKS},
    ).save(root / "excitation_stats.npz")

    def new_run(r: int, seed: int, status: str, start: int) -> str:
        point = ids[r]
        run = client.create_run(exp, start_time=start, tags={
            "senet.grid": grid.name, "senet.point": point.id, "senet.seed": str(seed),
            "senet.label": point.label, "mlflow.parentRunId": parent.info.run_id,
        })  # fmt: skip
        run_id = run.info.run_id
        for key, value in {"model": "se_resnet50", "dataset": "imagenet", "seed": seed,
                           "reduction": r, "squeeze": "avg", "gate": "sigmoid",
                           "placement": "standard", "stages": "2,3,4,5"}.items():  # fmt: skip
            client.log_param(run_id, key, value)
        if status == "FAILED":
            client.set_tag(run_id, "senet.fail_reason", FAIL_REASON)
        client.set_terminated(run_id, status=status, end_time=start + 1000)
        return run_id

    now = int(time.time() * 1000)
    # An earlier failed attempt of (16, 0): the finished rerun below must be the one used.
    new_run(16, 0, "FAILED", now - 10_000)
    for (r, seed), (status, top1, top5) in RUNS.items():
        run_id = new_run(r, seed, status, now + seed)
        if status != "FINISHED":
            continue
        final = {
            "final_val_top1_err": top1, "final_val_top5_err": top5,
            "best_val_top1_err": top1 - 0.1, "best_val_top5_err": top5 - 0.1,
            "gmacs": 3.87, "params": 28.1e6 * (16 / r) ** 0.1, "wall_time_s": 60.0,
        }  # fmt: skip
        curves = [
            Metric(key, value, now, step)
            for step in (1, 2, 3)
            for key, value in (("val_top1_err", top1 + 10 / step), ("train_loss", 3.0 / step))
        ]
        client.log_batch(run_id, metrics=[Metric(k, v, now, 3) for k, v in final.items()] + curves)
        if r == 16 and seed == 0:
            client.log_artifact(run_id, str(npz), artifact_path="excitation")
    return {"root": root, "uri": uri, "client": client, "grid": grid, "grid_path": grid_path}


@pytest.fixture(scope="module")
def table(store):
    runs = fetch_runs(store["client"], store["grid"].name)
    return build_table(from_grid(store["grid"]), runs, load_paper_numbers())


def no_runs() -> pd.DataFrame:
    return pd.DataFrame(columns=BASE_COLUMNS)


def _row(table, reduction: int):
    label = f"reduction={reduction}"
    return table.rows.set_index("label").loc[label]


# ---------------------------------------------------------------------------
# Statistics


@pytest.mark.parametrize(
    "df, expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)]
)
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_symmetry_and_limits():
    assert t_quantile(0.025, 4) == pytest.approx(-2.776445, abs=1e-6)
    assert t_quantile(0.5, 3) == 0.0
    assert t_quantile(0.975, 1e9) == pytest.approx(1.959964, abs=1e-6)
    # Closed forms: df = 1 is Cauchy, df = 2 is (2p - 1) / sqrt(2p(1 - p)).
    assert t_quantile(0.9, 1) == pytest.approx(math.tan(0.4 * math.pi), rel=1e-9)
    assert t_quantile(0.99, 2) == pytest.approx(0.98 / math.sqrt(2 * 0.99 * 0.01), rel=1e-9)
    assert t_quantile(0.975, 3) < t_quantile(0.975, 2.5) < t_quantile(0.975, 2)  # Welch's df


def test_welch_interval_by_hand():
    a = summarize([22.7 - D, 22.7 + D])
    b = summarize([22.0, 22.1, 22.2])
    ci = welch_interval(a, b)
    assert ci.df == pytest.approx(2.0)
    assert ci.diff == pytest.approx(0.6)
    assert (ci.low, ci.high) == pytest.approx((0.6 - 0.4302653, 0.6 + 0.4302653), abs=1e-6)
    assert welch_interval(summarize([1.0]), b) is None


# ---------------------------------------------------------------------------
# Tables


def test_seed_statistics(table):
    base = _row(table, 16)
    assert (base["n"], base["n_expected"]) == (3, 3)
    assert base["top1_mean"] == pytest.approx(22.1)
    assert base["top1_std"] == pytest.approx(0.1)
    assert base["top5_mean"] == pytest.approx(6.1)
    assert base["is_baseline"] and base["status"] == "complete"
    r4 = _row(table, 4)
    assert r4["n"] == 2 and r4["top1_mean"] == pytest.approx(22.0)
    assert r4["top1_std"] == pytest.approx(math.sqrt(0.02))
    assert r4["status"] == f"seed 2 failed: {FAIL_REASON}"
    r32 = _row(table, 32)
    assert r32["n"] == 2 and r32["status"] == "seed 2 no run"
    assert r32["params"] == pytest.approx(28.1e6 * 0.5**0.1)


def test_difference_and_ci_against_baseline(table):
    r32 = _row(table, 32)
    assert r32["d_top1"] == pytest.approx(0.6)
    assert r32["d_top1_low"] == pytest.approx(0.6 - 4.302653 * 0.1, abs=1e-5)
    assert r32["d_top1_high"] == pytest.approx(0.6 + 4.302653 * 0.1, abs=1e-5)
    r4 = _row(table, 4)
    # Welch by formula: variances 0.02/2 and 0.01/3.
    va, vb = 0.02 / 2, 0.01 / 3
    df = (va + vb) ** 2 / (va**2 / 1 + vb**2 / 2)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    assert r4["d_top1"] == pytest.approx(-0.1)
    assert (r4["d_top1_low"], r4["d_top1_high"]) == pytest.approx((-0.1 - half, -0.1 + half))
    assert math.isnan(_row(table, 16)["d_top1"])


def test_paper_columns_and_reproduce_marks(table):
    assert table.paper is not None and table.paper.table == "Table 10"
    r32, r4 = _row(table, 32), _row(table, 4)
    assert (r32["paper_top1"], r32["paper_top5"], r32["paper_params_m"]) == (22.72, 6.20, 26.9)
    assert r32["paper_d_top1"] == pytest.approx(0.44)
    assert r32["repro_top1"] == "✓"  # worse than r = 16 in the paper and here, CI > 0
    assert r4["paper_d_top1"] == pytest.approx(-0.03)
    assert r4["repro_top1"] == "(✓)"  # better in both, but the CI includes 0
    assert _row(table, 16)["paper_top1"] == 22.28


def test_nothing_is_dropped_silently(table):
    assert any("2 runs in MLflow; the finished one" in n for n in table.notes)
    seeds = table.seeds.set_index(["label", "seed"])
    assert seeds.loc[("reduction=4", 2), "state"] == "failed"
    assert seeds.loc[("reduction=32", 2), "state"] == "no run"
    assert len(table.seeds) == 9


def test_rendered_markdown_and_latex(table):
    md = to_markdown(table)
    assert "| reduction=32 | n = 2/3 | 22.70 ± 0.12 |" in md
    assert "+0.60 [+0.17, +1.03]" in md
    assert f"seed 2 failed: {FAIL_REASON}" in md
    assert "reduction=16 (baseline) | n = 3/3 | 22.10 ± 0.10 | 6.10 ± 0.10 | baseline" in md
    assert "Table 10 of Hu et al." in md and "arXiv 1709.01507v4" in md
    assert "| r = 32 | 22.72 (+0.44) | 6.20 (+0.17) |" in md
    tex = to_latex(table)
    assert "\\begin{tabular}" in tex and "22.70 $\\pm$ 0.12" in tex and "\\checkmark" in tex


def test_grid_without_file_is_rebuilt_from_runs(store):
    runs = fetch_runs(store["client"], store["grid"].name)
    spec = from_runs("gone/reduction", runs)
    assert not spec.from_file and spec.dataset == "imagenet"
    seeds = {p.label: p.seeds for p in spec.points}
    assert seeds == {"reduction=4": (0, 1, 2), "reduction=16": (0, 1, 2), "reduction=32": (0, 1)}
    table = build_table(spec, runs, load_paper_numbers())
    assert table.notes[0].startswith("No grid file found")


def test_cifar_ablation_says_no_paper_row():
    spec = GridSpec(
        name="cifar10/reduction", title="r on CIFAR-10", dataset="cifar10",
        paper_table="reduction", baseline="b",
        points=(PointSpec("b", "r=16", {"model": "se_resnet110", "reduction": 16}, (0, 1)),
                PointSpec("c", "r=8", {"model": "se_resnet110", "reduction": 8}, (0, 1))),
    )  # fmt: skip
    table = build_table(spec, no_runs(), load_paper_numbers())
    assert table.paper is None
    assert table.paper_note.startswith("no CIFAR row in the paper")
    md = to_markdown(table)
    assert "no CIFAR row in the paper" in md and "22.28" not in md
    assert "| r=8 | n = 0/2 | — |" in md and "seeds 0, 1 no run" in md
    activation = GridSpec(**{**spec.__dict__, "paper_table": "activation"})
    note = build_table(activation, no_runs(), load_paper_numbers()).paper_note
    assert note == "the paper has no table for the inner activation (ReLU vs none)"


def test_a_folder_dataset_is_named_by_its_path_and_never_taken_for_a_paper_dataset():
    book = load_paper_numbers()
    paper, note = book.lookup("reduction", "folder:data/cifar10-jpeg")
    assert paper is None
    assert note == "no folder:data/cifar10-jpeg row in the paper (Table 10 reports ImageNet only)"
    paper, note = book.lookup("cifar10/main", "folder:data/cifar10-jpeg")
    assert paper is None and note.startswith("no folder:data/cifar10-jpeg row in the paper (")


def test_cifar_main_rows_compare_with_their_own_original():
    book = load_paper_numbers()
    paper, _ = book.lookup("cifar100/main", "cifar100")
    assert paper.table == "Table 5"
    assert paper.match({"model": "se_resnet164"}).top1 == 21.31
    assert paper.match({"model": "se_resnet164"}).vs == "resnet164"


def test_tables_command_writes_md_csv_tex(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no queue journal here
    out = tmp_path / "results"
    code = cli_main(["tables", str(store["grid_path"]), "--tracking-uri", store["uri"],
                     "--out", str(out)])  # fmt: skip
    assert code == 0
    folder = out / "imagenet" / "reduction"  # results/<grid name>/
    for name in ("reduction.md", "reduction.csv", "reduction.tex", "reduction_seeds.csv"):
        assert (folder / name).stat().st_size > 200
    assert "n = 2/3" in (folder / "reduction.md").read_text()
    csv = (folder / "reduction.csv").read_text().splitlines()
    assert csv[0].startswith("grid,metric,point,label")
    assert "imagenet/reduction: 3 variants, 7/9 seeds finished" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Excitation statistics and figures


def test_block_picker_imagenet_and_cifar():
    assert pick_blocks(RESNET50_BLOCKS[::-1]) == [
        "SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3",
    ]  # fmt: skip
    cifar110 = [f"SE_{s}_{b}" for s in (1, 2, 3) for b in range(1, 19)]
    assert pick_blocks(cifar110) == ["SE_1_18", "SE_2_18", "SE_3_1", "SE_3_9", "SE_3_18"]
    assert pick_blocks(["SE_3_1", "SE_3_2"]) == ["SE_3_1", "SE_3_2"]  # SE in one stage only


def test_channel_sample_is_fixed_and_uniform():
    a, b = sample_channels(2048, 50, seed=0), sample_channels(2048, 50, seed=0)
    assert len(a) == 50 and len(set(a)) == 50 and (a == b).all() and (np.diff(a) > 0).all()
    assert (sample_channels(16, 50) == np.arange(16)).all()


def test_excitation_stats_round_trip(tmp_path):
    stats = synthetic_stats(["a", "b", "c"], {"SE_1_1": 4, "SE_2_1": 6})
    loaded = ExcitationStats.load(stats.save(tmp_path / "s.npz"))
    assert loaded.classes == ["a", "b", "c"] and list(loaded.blocks) == ["SE_1_1", "SE_2_1"]
    assert np.array_equal(loaded.blocks["SE_2_1"].mean, stats.blocks["SE_2_1"].mean)
    assert np.array_equal(loaded.blocks["SE_1_1"].count, [10, 20, 30])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(SenetError, match="bad.npz: not an excitation stats npz"):
        ExcitationStats.load(tmp_path / "bad.npz")


def test_default_classes_prefer_the_papers():
    stats = synthetic_stats(["n00000001", *PAPER_WNIDS[::-1]], {"SE_1_1": 4})
    assert choose_classes(stats) == PAPER_WNIDS
    assert choose_classes(stats, ["pug", "n00000001"]) == ["n02110958", "n00000001"]
    plain = synthetic_stats(["x", "y", "z", "w", "v"], {"SE_1_1": 4})
    assert choose_classes(plain) == ["x", "y", "z", "w"]


def test_default_classes_span_the_builtin_datas_warm_and_cool():
    """Five warm classes come first in the built-in data: the defaults must take both casts,
    each with the same textures, so the figures show what the casts do to the gates."""
    from senet.data.builtin import CLASS_NAMES

    stats = synthetic_stats(CLASS_NAMES, {"SE_1_1": 4})
    assert choose_classes(stats) == ["warm-horizontal", "warm-checker", "cool-horizontal",
                                     "cool-checker"]
    assert choose_classes(stats, k=2) == ["warm-horizontal", "cool-horizontal"]


def test_plot_functions_from_plain_stats(tmp_path):
    stats = synthetic_stats(["x", "y", "z"], {f"SE_{s}_{b}": 60 for s in (1, 2, 3)
                                              for b in (1, 2, 3)})  # fmt: skip
    paths = plot_inter_class(stats, None, None, tmp_path / "inter")
    paths += plot_intra_class(stats, ["z", "x"], ["SE_1_3", "SE_3_2"], tmp_path / "intra.png")
    assert [p.suffix for p in paths] == [".png", ".pdf", ".png", ".pdf"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_error_figure_has_a_top5_panel_only_above_10_classes(table, tmp_path):
    from dataclasses import replace

    from PIL import Image

    from analysis.figures import plot_error_by_variant

    widths = {}
    for classes in (1000, 10):
        shown = replace(table, num_classes=classes)
        png = plot_error_by_variant(shown, tmp_path / f"e{classes}")[0]
        widths[classes] = Image.open(png).size[0]
    assert 1.8 < widths[1000] / widths[10] < 2.2  # two panels against one


@pytest.mark.slow
def test_figures_command_from_mlflow(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results"
    code = cli_main(["figures", str(store["grid_path"]), "--tracking-uri", store["uri"],
                     "--out", str(out)])  # fmt: skip
    assert code == 0
    folder = out / "imagenet" / "reduction" / "figures"
    expected = ["reduction_error", "reduction_curves", "reduction_reduction-16_inter_class",
                "reduction_reduction-16_intra_class"]  # fmt: skip
    for stem in expected:
        for suffix in (".png", ".pdf"):
            assert (folder / f"{stem}{suffix}").stat().st_size > 10_000, stem + suffix
    printed = capsys.readouterr().out
    assert "reduction=4: no finished run with " + ARTIFACT_PATH in printed
