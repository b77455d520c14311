"""`senet excitation`: figures from weights on a generated ImageNet-style folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import senet
from senet.cli import main
from senet.excitation.stats import ExcitationStats

WNIDS = ["n01443537", "n02110958", "n09246464"]  # goldfish, pug, cliff


def _val_folder(root):
    rng = np.random.default_rng(0)
    for i, wnid in enumerate(WNIDS):
        folder = root / wnid
        folder.mkdir(parents=True)
        for j in range(3):
            pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            img = Image.fromarray(pixels)
            if i == 0 and j == 0:
                img = img.convert("L")  # a grayscale JPEG, as ImageNet has
            img.save(folder / f"{wnid}_{j}.JPEG")
    return root


@pytest.mark.slow
def test_excitation_from_our_weights_on_a_val_folder(tmp_path, capsys):
    data = _val_folder(tmp_path / "val")
    weights = tmp_path / "weights.pt"
    torch.manual_seed(0)
    torch.save(senet.build("se_resnet20").state_dict(), weights)
    out = tmp_path / "out"
    code = main(["excitation", "--model", "se_resnet20", "--weights", str(weights),
                 "--data", str(data), "--size", "32", "--per-class", "2", "--workers", "0",
                 "--classes", "goldfish,n02110958", "--device", "cpu", "--out", str(out)])
    assert code == 0
    stats = ExcitationStats.load(out / "excitation_stats.npz")
    assert stats.classes == WNIDS
    assert list(stats.blocks["SE_3_3"].count) == [2, 2, 2]  # --per-class caps every class
    assert stats.blocks["SE_3_3"].mean.shape == (3, 64)
    for name in ("inter_class_excitation", "intra_class_excitation"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (out / "figures" / f"{name}.pdf").exists()
    assert "figure:" in capsys.readouterr().out

    code = main(["excitation", "--model", "se_resnet20", "--data", str(data), "--size", "32",
                 "--workers", "0", "--classes", "tench", "--out", str(out)])
    assert code == 2 and "'tench' is not a class folder" in capsys.readouterr().err


def test_a_tree_one_level_too_high_is_refused_naming_the_folder_meant(tmp_path, capsys):
    root = tmp_path / "imagenet-sample"
    _val_folder(root / "val")
    args = ["excitation", "--model", "se_resnet20", "--size", "32", "--workers", "0",
            "--device", "cpu", "--out", str(tmp_path / "out")]
    assert main([*args, "--data", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"probably --data {root / 'val'}" in err[0]
    assert not (tmp_path / "out").exists()

    # a class folder whose images are not its own (only in a subfolder of notes) is refused
    (root / "val" / "n99999999" / "notes").mkdir(parents=True)
    (root / "val" / "n99999999" / "readme.txt").write_text("no images here")
    assert main([*args, "--data", str(root / "val")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "class folders without image files of their own: n99999999" in err[0]
