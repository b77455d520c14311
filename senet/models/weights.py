"""Loading weights: our own state dicts and the released SE-ResNet PyTorch port.

The released SE-ResNet-50/101/152 weights circulate in the key layout of Cadene's
``pretrainedmodels`` senet.py (kept by timm as ``legacy_seresnet*``): the stem under
``layer0.``, SE blocks as ``se_module.fc1/fc2`` 1x1 convolutions with bias, and the
classifier as ``last_linear``. That architecture is our original layout (stride in the
first 1x1), SE with bias, r = 16, and an unpadded ceil-mode stem max-pool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from senet.errors import SenetError

RELEASED_OPTIONS = {"layout": "original", "bias": True, "stem": "released", "reduction": 16}
_RELEASED_MODELS = ("se_resnet50", "se_resnet101", "se_resnet152")

_LEGACY_RENAMES = [
    (re.compile(r"^layer0\.conv1\."), "conv1."),
    (re.compile(r"^layer0\.bn1\."), "bn1."),
    (re.compile(r"\.se_module\."), ".se."),
    (re.compile(r"^last_linear\."), "fc."),
]


def _is_legacy(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("layer0.") or ".se_module." in k for k in state)


def _from_legacy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in _LEGACY_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def _read(path_or_state: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if isinstance(path_or_state, Mapping):
        state = dict(path_or_state)
    else:
        path = Path(path_or_state)
        if not path.is_file():
            raise SenetError(f"weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
            raise SenetError(f"cannot read weights file {path}: {exc}") from None
    for wrapper in ("state_dict", "model"):
        if wrapper in state and isinstance(state[wrapper], Mapping):
            state = dict(state[wrapper])
    # Checkpoints saved from DDP or torch.compile prefix every key.
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path_or_state_dict: str | Path | Mapping[str, Any]) -> nn.Module:
    """Load ours or the released layout into ``model``; every key must match."""
    state = _read(path_or_state_dict)
    if _is_legacy(state):
        state = _from_legacy(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        def short(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {short(unexpected)}")
        raise SenetError(
            "state dict does not match the model: " + "; ".join(parts)
            + " — check the model name and options (e.g. SE bias, reduction, stages)"
        )
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise SenetError(
            f"shape mismatch for {k}: weights {tuple(state[k].shape)} vs model "
            f"{tuple(expected[k].shape)} ({len(bad)} keys differ) — check reduction/num_classes"
        )
    model.load_state_dict(state)
    return model


def read_state(path_or_state: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A state dict from a file or a mapping, unwrapped from checkpoints, DDP and compile."""
    return _read(path_or_state)


def options_for_weights(
    name: str, state: Mapping[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """The model options that ``state`` loads into: ``options`` for our own checkpoints,
    the released architecture (RELEASED_OPTIONS) for the released layout."""
    if not _is_legacy(state):
        return dict(options)
    if name not in _RELEASED_MODELS:
        raise SenetError(
            f"released weights exist for {', '.join(_RELEASED_MODELS)}, not {name!r}"
        )
    for key, value in RELEASED_OPTIONS.items():
        if key in options and str(options[key]).lower() != str(value).lower():
            raise SenetError(
                f"option {key}={options[key]!r} conflicts with the released weights "
                f"(they need {key}={value})"
            )
    return {**options, **RELEASED_OPTIONS}
