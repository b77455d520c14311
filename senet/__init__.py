"""senet: an ablation suite for Squeeze-and-Excitation networks."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["build", "load_weights", "__version__"]


def build(name: str, weights: str | None = None, **options: Any):
    """Build a model by name, e.g. ``build("se_resnet50", reduction=8)``; see senet.models."""
    from senet.models import build as _build

    return _build(name, weights=weights, **options)


def load_weights(model, path_or_state_dict):
    """Load weights (ours or the released SE-ResNet port's layout) into ``model``."""
    from senet.weights import load_weights as _load

    return _load(model, path_or_state_dict)
