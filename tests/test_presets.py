"""The protocol presets: the paper's schedules, and every unstated value marked."""

from __future__ import annotations

import re

import pytest

from senet.engine.schedule import Schedule
from senet.settings.config import PRESET_DIR, load_preset


def _schedule(name: str, steps: int = 1) -> Schedule:
    preset = load_preset(name)
    return Schedule.from_preset(
        preset["schedule"], preset["optimizer"]["lr"], preset["epochs"], steps, warmup=False
    )


def test_ablation_default_is_footnote_2():
    """270 epochs; lr 0.1, /10 after epochs 125, 200 and 250 (epochs are 1-based)."""
    preset = load_preset("imagenet-ablation")
    assert preset["epochs"] == 270 and preset["model"]["bias"] is False
    s = _schedule("imagenet-ablation")
    rates = {e: s.lr(e, 0) for e in (1, 125, 126, 200, 201, 250, 251, 270)}
    assert rates == pytest.approx(
        {1: 0.1, 125: 0.1, 126: 0.01, 200: 0.01, 201: 1e-3, 250: 1e-3, 251: 1e-4, 270: 1e-4}
    )


def test_plateau_variant_reaches_about_300_epochs():
    """A validation loss that improves until `patience` epochs before each of footnote 2's
    drops (125, 200, 250) and then stalls: the plateau schedule drops where the footnote
    does and stops 20 epochs after the last drop, at 270, inside the ~300-epoch cap."""
    s = _schedule("imagenet-ablation-plateau")
    assert load_preset("imagenet-ablation-plateau")["epochs"] == 300
    stalls_from = [125 - s.patience, 200 - s.patience, 250 - s.patience, 270 - s.patience]
    loss, epoch, dropped_at = 10.0, 0, []
    while not s.finished and epoch < 300:
        epoch += 1
        if epoch <= stalls_from[s.drops]:
            loss *= 0.99
        before = s.drops
        s.end_epoch(loss)
        if s.drops > before:
            dropped_at.append(epoch)
    assert dropped_at == [125, 200, 250]
    assert s.finished and epoch == 270
    assert s.patience >= 20  # a patience of 5 ended the old 100-epoch runs near epoch 100


ASSUMED = {
    "imagenet-ablation": ["batch_size", "weight_decay", "label_smoothing", "momentum"],
    "imagenet-ablation-plateau": ["batch_size", "weight_decay", "label_smoothing",
                                  "patience", "threshold", "epochs"],
    "imagenet": ["weight_decay", "label_smoothing"],
}


@pytest.mark.parametrize("name", sorted(ASSUMED))
def test_unstated_settings_are_marked_as_assumptions(name):
    text = (PRESET_DIR / f"{name}.toml").read_text()
    for key in ASSUMED[name]:
        # The key's line, or the comment block right above it, says "assumption".
        m = re.search(rf"((?:^#.*\n)*)^{key}\s*=.*$", text, re.MULTILINE)
        assert m is not None, key
        assert "assumption" in m.group(0), f"{name}: {key} is not marked as an assumption"
