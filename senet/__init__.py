"""senet: an ablation suite for Squeeze-and-Excitation networks."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["build", "load_weights", "probe", "__version__"]


def __getattr__(name: str) -> Any:
    # `import senet` stays cheap (no torch) for the CLI; `senet.probe` loads on first use,
    # so `senet.probe.record_excitations(model)` works after a bare `import senet`.
    if name == "probe":
        import importlib

        return importlib.import_module("senet.excitation.probe")
    raise AttributeError(f"module 'senet' has no attribute {name!r}")


def build(name: str, weights: str | None = None, **options: Any):
    """Build a model by name, e.g. ``build("se_resnet50", reduction=8)``; see senet.models."""
    from senet.models import build as _build

    return _build(name, weights=weights, **options)


def load_weights(model, path_or_state_dict):
    """Load weights (ours or the released SE-ResNet port's layout) into ``model``."""
    from senet.models.weights import load_weights as _load

    return _load(model, path_or_state_dict)
