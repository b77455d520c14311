"""Grid files: every shipped grid validates, and every mistake names file:key."""

from __future__ import annotations

from pathlib import Path

import pytest

from senet.errors import SenetError
from senet.settings.grid import available_grids, grid_name, load_grid, point_id

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(
    p.relative_to(REPO / "experiments").with_suffix("").as_posix()
    for p in (REPO / "experiments").rglob("*.toml")
    if p.parent.name != "search"  # search files (senet.queue.search), tested in test_search.py
)
ABLATIONS = ["activation", "gate", "integration", "nosqueeze", "reduction", "se3x3",
             "squeeze", "stages"]


def test_every_shipped_grid_is_there_and_validates():
    expected = {f"imagenet/{a}" for a in ABLATIONS} | {"imagenet/main"}
    for ds in ("cifar10", "cifar100"):
        expected |= {f"{ds}/{a}" for a in ABLATIONS} | {f"{ds}/main"}
    expected |= {"demo", "demo-adaptive", "cifar10-cpu/se_resnet20_reduction"}
    assert set(SHIPPED) == expected
    assert set(available_grids()) >= expected
    for name in SHIPPED:
        grid = load_grid(name)
        assert grid.name == name
        assert grid.points and grid.seeds
        assert grid.baseline in {p.id for p in grid.points}, name
        assert len({p.id for p in grid.points}) == len(grid.points)


def test_imagenet_grids_follow_the_paper():
    rows = {name: [p.label for p in load_grid(f"imagenet/{name}").points] for name in ABLATIONS}
    assert rows["reduction"] == ["reduction=2", "reduction=4", "reduction=8", "reduction=16",
                                 "reduction=32", "original (ResNet-50)"]
    assert rows["stages"] == ["ResNet-50", "SE_Stage_2", "SE_Stage_3", "SE_Stage_4",
                              "SE_Stage_2,3,4", "SE_All"]
    assert rows["nosqueeze"] == ["ResNet-50", "NoSqueeze", "SE"]
    assert rows["integration"] == ["SE", "SE-PRE", "SE-POST", "SE-Identity", "ResNet-50"]
    assert rows["se3x3"] == ["SE", "SE_3x3", "ResNet-50"]
    assert rows["squeeze"] == ["Max", "Avg", "ResNet-50"]
    assert rows["gate"] == ["ReLU", "Tanh", "Sigmoid", "ResNet-50"]
    assert rows["activation"] == ["ReLU", "none"]
    grid = load_grid("imagenet/reduction")
    assert grid.paper_table == "imagenet/reduction" and grid.paper_ref == "TPAMI Table 10"
    for p in grid.points:
        assert p.settings["preset"] == "imagenet-ablation"
        assert p.settings["layout"] == "original"
    baseline = grid.points[-1]
    # the plain row keeps the shared settings but not the SE options
    assert baseline.settings == {"dataset": "imagenet", "preset": "imagenet-ablation",
                                 "model": "resnet50", "layout": "original"}
    assert [p.model_options() for p in grid.points[:2]] == [
        {"layout": "original", "reduction": 2}, {"layout": "original", "reduction": 4}]


def test_cifar_grids_carry_the_plain_baseline():
    for ds in ("cifar10", "cifar100"):
        for name in ABLATIONS:
            grid = load_grid(f"{ds}/{name}")
            models = [p.model for p in grid.points]
            # SE_3x3 runs on the bottleneck net, where the 3x3 is 4x narrower (Table 15).
            plain = "resnet164" if name == "se3x3" else "resnet110"
            assert models.count(plain) == 1, (ds, name)
            assert all(p.settings["dataset"] == ds for p in grid.points)
            # The ablations drop the SE FC bias, as the ImageNet ones (TPAMI Sec. 6).
            assert all(p.settings["preset"] == "cifar-preact-ablation" for p in grid.points)
        stages = [p.settings.get("stages") for p in load_grid(f"{ds}/stages").points]
        assert stages == [None, "1", "2", "3", "1,2,3"]
        main = load_grid(f"{ds}/main")
        assert [(p.model, p.settings["preset"]) for p in main.points] == [
            ("resnet110", "cifar-preact"), ("se_resnet110", "cifar-preact"),
            ("resnet164", "cifar-preact"), ("se_resnet164", "cifar-preact"),
            ("wrn16_8", "cifar-wrn"), ("se_wrn16_8", "cifar-wrn")]


def test_demo_grid_is_small():
    # Enough to compare variants over seeds, small enough for `senet demo` to finish in
    # about 3 minutes on 2 CPU cores.
    demo = load_grid("demo")
    assert 2 <= len(demo.points) <= 4 and 2 <= len(demo.seeds) <= 4
    work = 0
    for p in demo.points:
        assert p.settings["dataset"] == "builtin" and p.settings["preset"] == "fast"
        assert p.model in ("resnet20", "se_resnet20")
        epochs, subset = p.settings.get("epochs"), p.settings.get("subset")
        assert epochs is not None and 1 <= epochs <= 4, "the demo pins a small epoch count"
        assert subset is not None and 500 <= subset <= 4000, "the demo pins a small subset"
        work += epochs * subset * len(demo.seeds)
    # Two cores train two runs at once: 32,000 images is two runs each at the demo's budget,
    # which fits three minutes; 48,000 (three seeds) took 246 s.
    assert work <= 32_000, f"{work} training images in all: the demo would take too long"


def test_point_ids_are_stable_hashes():
    # Pinned: changing the hashing would orphan every queued and finished point.
    assert point_id({"model": "resnet20", "dataset": "builtin", "preset": "fast"}) == (
        point_id({"preset": "fast", "dataset": "builtin", "model": "resnet20"}))
    assert point_id({"model": "resnet20"}) == "b284ca339e"
    ids = [p.id for p in load_grid("imagenet/reduction").points]
    assert ids == [p.id for p in load_grid("imagenet/reduction").points]


def test_names_resolve_from_paths(tmp_path):
    assert grid_name(REPO / "experiments" / "cifar10" / "reduction.toml") == "cifar10/reduction"
    # Outside experiments/ the parent folder is part of the name, so copies of
    # cifar10/reduction.toml and cifar100/reduction.toml stay two grids (issue 13, item 3).
    assert grid_name(tmp_path / "mine.toml") == f"{tmp_path.name}/mine"
    assert load_grid(str(REPO / "experiments" / "demo.toml")).name == "demo"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "reduction.toml").write_text(
            BASE + "[axes]\nreduction = [4]\n")
    assert load_grid(tmp_path / "a" / "reduction.toml").name == "a/reduction"
    assert load_grid(tmp_path / "b" / "reduction.toml").name == "b/reduction"
    declared = tmp_path / "a" / "named.toml"
    declared.write_text('name = "cifar10-copy"\n' + BASE + "[axes]\nreduction = [4]\n")
    assert load_grid(declared).name == "cifar10-copy"


def test_axes_repeats_bools_and_infinities_are_refused_in_one_line(tmp_path):
    """Issue 13's grid rows: each refused when the grid is loaded, naming the right key."""
    cases = {
        "[axes]\nreduction = [4, 4]\n": "axes.reduction",
        "[axes]\nreduction = [true]\n": "axes.reduction",
        "lr = 1e400\n[axes]\nreduction = [4]\n": ":lr",
        "[axes]\nlr = [0.1, inf]\n": "axes.lr",
    }
    for body, blamed in cases.items():
        message = _error(tmp_path, BASE + body)
        assert blamed in message, message
        assert "variants" not in message
        assert "\n" not in message


# ---------------------------------------------------------------------------
# Errors name file:key, the bad value and the valid choices

BASE = 'dataset = "cifar10"\npreset = "cifar-preact"\nmodel = "se_resnet110"\n'


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SenetError) as info:
        load_grid(str(path))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "where", "needles"),
    [
        (BASE + "colour = 1\n", "colour", ["unknown key 'colour'", "reduction", "epochs"]),
        (BASE + "[axes]\nreduktion = [2]\n", "axes.reduktion", ["unknown key 'reduktion'"]),
        (BASE + '[[variants]]\nlabel = "x"\nsqueeze = "mean"\n', "variants[0].squeeze",
         ["'mean'", "avg, max, none"]),
        (BASE + '[[variants]]\nlabel = "x"\nmodel = "resnet111"\n', "variants[0].model",
         ["'resnet111'", "se_resnet110"]),
        (BASE + '[[variants]]\nlabel = "x"\nlayout = "v1.5"\n', "variants[0].layout",
         ["layout", "ImageNet models only"]),
        (BASE + '[[variants]]\nlabel = "x"\nstages = "3,5"\n', "variants[0].stages",
         ["'3,5'", "1,2,3"]),
        (BASE + '[[variants]]\nlabel = "plain"\nmodel = "resnet110"\nreduction = 8\n',
         "variants[0].reduction", ["SE option 'reduction' on plain model 'resnet110'"]),
        (BASE + '[[variants]]\nlabel = "x"\nmodel = "se_resnet50"\n', "variants[0].model",
         ["imagenet model", "'cifar10'"]),
        (BASE + "seed = 3\n[axes]\nreduction = [2]\n", "seed", ["seeds = [...]"]),
        (BASE + '[[variants]]\nlabel = "x"\nout = "here"\n', "variants[0].out",
         ["senet work --runs-dir"]),
        (BASE + "[axes]\nreduction = [0]\n", "axes.reduction", ["reduction=0", ">= 1"]),
        (BASE + "[axes]\nepochs = [0]\n", "axes.epochs", ["integer >= 1", "0"]),
        (BASE + '[axes]\npreset = ["slow"]\n', "axes.preset", ["'slow'", "cifar-wrn"]),
        (BASE + "[axes]\nreduction = []\n", "axes.reduction", ["non-empty list"]),
        (BASE + 'seeds = [0, 0]\n[axes]\nreduction = [2]\n', "seeds", ["repeated seed"]),
        (BASE + '[axes]\nreduction = [16]\n[[variants]]\nlabel = "default"\n', "variants[0]",
         ["'reduction=16' (axes) and 'default' train the same settings"]),
        (BASE + '[[variants]]\nlabel = "a"\n[[variants]]\nlabel = "a"\nreduction = 2\n',
         "variants[1]", ["share the label 'a'"]),
        (BASE + 'baseline = "nope"\n[axes]\nreduction = [2]\n', "baseline",
         ["no point is labelled 'nope'", "'reduction=2'"]),
        ('dataset = "cifar10"\nmodel = "se_resnet110"\n[axes]\nreduction = [2]\n', "preset",
         ["missing"]),
        (BASE + '[[variants]]\nreduction = 2\n', "variants[0].label", ["label"]),
        (BASE, "axes", ["no points"]),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, text, where, needles):
    message = _error(tmp_path, text)
    assert f"bad.toml:{where}: " in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def test_inherited_se_options_are_dropped_for_a_plain_row_but_checked_on_se_rows(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(BASE + 'reduction = 8\n[[variants]]\nlabel = "SE"\n'
                    '[[variants]]\nlabel = "plain"\nmodel = "resnet110"\n')
    grid = load_grid(str(path))
    assert [p.settings.get("reduction") for p in grid.points] == [8, None]
    message = _error(tmp_path, BASE.replace("cifar10", "imagenet").replace(
        "se_resnet110", "se_resnet50").replace("cifar-preact", "imagenet-ablation")
        + 'stages = "1"\n[[variants]]\nlabel = "x"\n')
    assert "bad.toml:stages: " in message and "2,3,4,5" in message


def test_toml_syntax_and_unknown_grid(tmp_path):
    assert "invalid TOML" in _error(tmp_path, "model = \n")
    with pytest.raises(SenetError, match="unknown grid 'cifar10/nope'.*cifar10/reduction"):
        load_grid("cifar10/nope")


def test_queue_of_a_bad_grid_queues_nothing(tmp_path, capsys):
    from senet.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "[axes]\nreduction = [2, 0]\n")
    storage = tmp_path / "q.journal"
    assert main(["queue", "demo", str(bad), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("senet queue: error: ") and "bad.toml:axes.reduction" in err
    assert not storage.exists()


@pytest.mark.parametrize("name, problem", [
    ("../../escape", "'..'"), ("a/../../b", "'..'"), ("/tmp/escape", "absolute"),
    ("C:/escape", "absolute"), ("a\\\\b", "absolute"), ("a//b", "empty part"),
    ("two\\nlines", "control characters"), ("tab\\there", "control characters"),
])
def test_grid_names_that_leave_their_folder_are_refused(tmp_path, name, problem):
    """Issue 23: a grid's name becomes results/<name>/; it must stay inside, on one line."""
    path = tmp_path / "g.toml"
    path.write_text(f'name = "{name}"\n' + BASE + "[axes]\nreduction = [4]\n")
    with pytest.raises(SenetError) as err:
        load_grid(path)
    assert "g.toml:name:" in str(err.value) and problem in str(err.value)
    assert "\n" not in str(err.value)


def test_a_label_is_one_line(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(BASE + '[[variants]]\nlabel = "two\\nlines"\nreduction = 4\n')
    with pytest.raises(SenetError, match=r"g.toml:variants\[0\]: label 'two\\nlines': labels "
                                         "are one line"):
        load_grid(path)


def test_a_name_read_back_from_mlflow_never_leaves_the_output_folder():
    from analysis.gridspec import GridSpec

    with pytest.raises(SenetError, match="outside the output folder"):
        _ = GridSpec(name="../../escape", title="x", points=()).folder


def test_a_grid_under_another_protocol_is_a_grid_of_its_own(tmp_path):
    fixed = load_grid("imagenet/gate")
    plateau = load_grid("imagenet/gate", preset="imagenet-ablation-plateau")
    assert plateau.name == "imagenet/gate@imagenet-ablation-plateau"
    assert plateau.title.endswith("(protocol: preset imagenet-ablation-plateau)")
    assert {p.settings["preset"] for p in plateau.points} == {"imagenet-ablation-plateau"}
    assert [p.label for p in plateau.points] == [p.label for p in fixed.points]
    assert not {p.id for p in plateau.points} & {p.id for p in fixed.points}
    # The name alone finds it again (senet tables, status and work take it).
    again = load_grid("imagenet/gate@imagenet-ablation-plateau")
    assert [p.id for p in again.points] == [p.id for p in plateau.points]
    # The file's own preset changes nothing, not even the name.
    assert load_grid("imagenet/gate", preset="imagenet-ablation").name == "imagenet/gate"
    # Per-row presets give way too: WRN-16-8 rows leave cifar-wrn.
    main = load_grid("cifar10/main@cifar-preact")
    assert {p.settings["preset"] for p in main.points} == {"cifar-preact"}
    with pytest.raises(SenetError, match="--preset 'nope': give one of .*imagenet-ablation"):
        load_grid("imagenet/gate", preset="nope")
    with pytest.raises(SenetError, match="names preset 'fast' and --preset gives 'imagenet'"):
        load_grid("imagenet/gate@fast", preset="imagenet")
    axis = tmp_path / "p.toml"
    axis.write_text('dataset = "builtin"\nmodel = "resnet20"\npreset = "fast"\n'
                    '[axes]\npreset = ["fast", "cifar-preact"]\n')
    with pytest.raises(SenetError, match="axes.preset: the grid varies the preset itself"):
        load_grid(axis, preset="cifar-wrn")
