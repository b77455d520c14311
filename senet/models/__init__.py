"""The model registry: fixed names, validated options, one ``build`` function.

    >>> model = build("se_resnet50", reduction=8, squeeze="max")

Options (strings as given on the command line are accepted as well as typed values):
reduction, squeeze, activation, gate, bias, placement and stages apply to ``se_``
models; layout and stem to ImageNet models; num_classes to all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from senet.errors import SenetError
from senet.models.cifar import CIFAR_STAGES, CifarResNet
from senet.models.common import se_blocks
from senet.models.imagenet import IMAGENET_STAGES, ImageNetResNet
from senet.se import ACTIVATIONS, GATES, PLACEMENTS, SQUEEZES, SEConfig

__all__ = [
    "MODEL_NAMES", "OPTION_NAMES", "SE_OPTION_NAMES", "build", "validate_options", "se_blocks",
]


@dataclass(frozen=True)
class _Arch:
    family: str  # "imagenet" or "cifar"
    kwargs: tuple[tuple[str, Any], ...]


_PLAIN = {
    "resnet50": _Arch("imagenet", (("depth", 50),)),
    "resnet101": _Arch("imagenet", (("depth", 101),)),
    "resnet152": _Arch("imagenet", (("depth", 152),)),
    "resnet20": _Arch("cifar", (("unit", "basic"), ("blocks_per_stage", 3))),
    "resnet56": _Arch("cifar", (("unit", "basic"), ("blocks_per_stage", 9))),
    "resnet110": _Arch("cifar", (("unit", "basic"), ("blocks_per_stage", 18))),
    "resnet164": _Arch("cifar", (("unit", "bottleneck"), ("blocks_per_stage", 18))),
    "wrn16_8": _Arch(
        "cifar", (("unit", "basic"), ("blocks_per_stage", 2), ("widths", (128, 256, 512)))
    ),
}
MODEL_NAMES: list[str] = [*_PLAIN, *(f"se_{n}" for n in _PLAIN)]

SE_DEFAULTS: dict[str, Any] = {
    "reduction": 16,
    "squeeze": "avg",
    "activation": "relu",
    "gate": "sigmoid",
    "bias": True,
    "placement": "standard",
}
# The option names, defined once: grids, workers and analysis derive their lists from these.
SE_OPTION_NAMES: tuple[str, ...] = (*SE_DEFAULTS, "stages")
IMAGENET_OPTION_NAMES: tuple[str, ...] = ("layout", "stem")
OPTION_NAMES: tuple[str, ...] = (*SE_OPTION_NAMES, *IMAGENET_OPTION_NAMES)  # + num_classes
_CHOICES = {
    "squeeze": SQUEEZES,
    "activation": ACTIVATIONS,
    "gate": GATES,
    "placement": PLACEMENTS,
    "layout": ("original", "v1.5"),
    "stem": ("standard", "released"),
}
_FAMILY_STAGES = {"imagenet": IMAGENET_STAGES, "cifar": CIFAR_STAGES}


def _arch(name: str) -> tuple[_Arch, bool]:
    base = name[3:] if name.startswith("se_") else name
    if base not in _PLAIN:
        raise SenetError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    return _PLAIN[base], name.startswith("se_")


def valid_option_names(name: str) -> list[str]:
    arch, has_se = _arch(name)
    keys = ["num_classes"]
    if arch.family == "imagenet":
        keys += IMAGENET_OPTION_NAMES
    if has_se:
        keys += SE_OPTION_NAMES
    return keys


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise SenetError(f"option {key}={value!r}: expected true or false")


def _parse_int(key: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise SenetError(f"option {key}={value!r}: expected an integer >= {minimum}") from None
    if number < minimum:
        raise SenetError(f"option {key}={value!r}: expected an integer >= {minimum}")
    return number


def _parse_stages(value: Any, family: str) -> str:
    valid = _FAMILY_STAGES[family]
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [s for s in str(value).replace(" ", "").split(",") if s]
    try:
        stages = sorted({int(s) for s in items})
    except ValueError:
        stages = []
    if not stages or any(s not in valid for s in stages):
        listed = ",".join(map(str, valid))
        raise SenetError(
            f"option stages={value!r}: expected a comma list of {family} stages from {listed} "
            "(for no SE at all, use the plain model name)"
        )
    return ",".join(map(str, stages))


def validate_options(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check ``options`` for model ``name``; return every applicable option resolved.

    Raises SenetError naming the bad key or value and listing the valid choices.
    """
    arch, has_se = _arch(name)
    options = dict(options or {})
    allowed = valid_option_names(name)
    for key in options:
        if key not in allowed:
            hint = ""
            if key in SE_OPTION_NAMES:
                hint = f" (SE options need an se_ model, e.g. se_{name})"
            elif key in IMAGENET_OPTION_NAMES:
                hint = " (ImageNet models only)"
            raise SenetError(
                f"unknown option {key!r} for model {name}{hint}; "
                f"valid options: {', '.join(allowed)}"
            )
    resolved: dict[str, Any] = {}
    resolved["num_classes"] = _parse_int(
        "num_classes", options.get("num_classes", 1000 if arch.family == "imagenet" else 10), 1
    )
    if arch.family == "imagenet":
        resolved["layout"] = options.get("layout", "original")
        resolved["stem"] = options.get("stem", "standard")
    if has_se:
        for key, default in SE_DEFAULTS.items():
            resolved[key] = options.get(key, default)
        resolved["reduction"] = _parse_int("reduction", resolved["reduction"], 1)
        resolved["bias"] = _parse_bool("bias", resolved["bias"])
        resolved["stages"] = _parse_stages(
            options.get("stages", _FAMILY_STAGES[arch.family]), arch.family
        )
    for key, choices in _CHOICES.items():
        if key in resolved:
            resolved[key] = str(resolved[key]).lower()
            if resolved[key] not in choices:
                raise SenetError(
                    f"option {key}={options.get(key)!r}: valid values are {', '.join(choices)}"
                )
    return resolved


def family(name: str) -> str:
    """``imagenet`` or ``cifar``: which input size and stage numbering the model uses."""
    return _arch(name)[0].family


def build(name: str, weights: str | None = None, **options: Any) -> nn.Module:
    """Build a model by name. ``weights`` (a path) also loads the released weights."""
    if weights is not None:
        # weights.py knows state-dict layouts only, never the model registry.
        from senet.weights import load_weights, options_for_weights, read_state

        state = read_state(weights)
        return load_weights(build(name, **options_for_weights(name, state, options)), state)
    arch, has_se = _arch(name)
    opts = validate_options(name, options)
    kwargs = dict(arch.kwargs)
    se = None
    if has_se:
        se = SEConfig(**{k: opts[k] for k in SE_DEFAULTS})
        kwargs["se_stages"] = tuple(int(s) for s in opts["stages"].split(","))
    if arch.family == "imagenet":
        model: nn.Module = ImageNetResNet(
            num_classes=opts["num_classes"], layout=opts["layout"], stem=opts["stem"], se=se,
            **kwargs,
        )
    else:
        model = CifarResNet(num_classes=opts["num_classes"], se=se, **kwargs)
    model.senet_name = name
    model.senet_options = opts
    return model

