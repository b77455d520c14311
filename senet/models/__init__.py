"""The model registry: fixed names, validated options, one ``build`` function.

    >>> model = build("se_resnet50", reduction=8, squeeze="max")

Options (strings as given on the command line are accepted as well as typed values):
reduction, squeeze, activation, gate, bias, placement and stages apply to ``se_``
models; layout and stem to ImageNet models; num_classes to all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from senet.errors import SenetError
from senet.models.cifar import CIFAR_STAGES, CifarResNet
from senet.models.common import se_blocks
from senet.models.imagenet import IMAGENET_STAGES, ImageNetResNet
from senet.models.se import ACTIVATIONS, GATES, PLACEMENTS, SQUEEZES, SEConfig

__all__ = [
    "MODEL_NAMES", "OPTION_NAMES", "SE_OPTION_NAMES", "build", "validate_options", "se_blocks",
    "stage_reductions",
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

# The paper's standard SE block, as SEConfig's defaults say once.
SE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SEConfig)}
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


def _parse_reduction(value: Any, family: str) -> dict[int, int | None] | int:
    """An int (every SE stage), or one value per stage: int >= 1 or ``none`` (no SE).

    Returns the int, or stage -> r (None where the stage has no SE).
    """
    stages = _FAMILY_STAGES[family]
    if isinstance(value, (list, tuple)):
        items = [str(v).strip().lower() for v in value]
    elif isinstance(value, str) and "," in value:
        items = [s.strip().lower() for s in value.split(",")]
    else:
        return _parse_int("reduction", value, 1)
    expected = (
        f"expected {len(stages)} comma-separated values, one per {family} stage "
        f"{','.join(map(str, stages))}, each an integer >= 1 or none"
    )
    if len(items) != len(stages):
        raise SenetError(f"option reduction={value!r}: {expected}")
    per_stage: dict[int, int | None] = {}
    for stage, item in zip(stages, items, strict=True):
        if item == "none":
            per_stage[stage] = None
        elif item.isdigit() and int(item) >= 1:
            per_stage[stage] = int(item)
        else:
            raise SenetError(f"option reduction={value!r}: bad value {item!r}; {expected}")
    if all(r is None for r in per_stage.values()):
        raise SenetError(
            f"option reduction={value!r}: every stage is none; for no SE at all, "
            "use the plain model name"
        )
    return per_stage


def _resolve_reduction(
    value: Any, stages_given: Any, family: str
) -> tuple[int | str, str]:
    """(canonical reduction, canonical stages).

    A per-stage list decides which stages carry SE (its non-``none`` entries); an explicit
    ``stages`` next to it must name exactly those stages. The canonical form is an int when
    every SE stage has the same r (so ``16,16,16`` equals ``16`` and ``4,none,none`` equals
    ``reduction=4, stages=1``), else a string such as ``4,none,16``.
    """
    parsed = _parse_reduction(value, family)
    if isinstance(parsed, int):
        stages = stages_given if stages_given is not None else _FAMILY_STAGES[family]
        return parsed, _parse_stages(stages, family)
    with_se = ",".join(str(s) for s, r in parsed.items() if r is not None)
    if stages_given is not None and _parse_stages(stages_given, family) != with_se:
        raise SenetError(
            f"option stages={stages_given!r} disagrees with reduction={value!r}, whose SE "
            f"stages are {with_se}; drop stages (a per-stage reduction says it with none)"
        )
    ratios = {r for r in parsed.values() if r is not None}
    if len(ratios) == 1:
        return ratios.pop(), with_se
    return ",".join("none" if r is None else str(r) for r in parsed.values()), with_se


def stage_reductions(options: dict[str, Any], family: str) -> dict[int, int]:
    """Resolved options -> {stage: r} for the stages that carry SE."""
    stages = [int(s) for s in str(options["stages"]).split(",")]
    reduction = options["reduction"]
    if isinstance(reduction, int):
        return {s: reduction for s in stages}
    values = str(reduction).split(",")
    return {
        s: int(v) for s, v in zip(_FAMILY_STAGES[family], values, strict=True) if v != "none"
    }


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
        resolved["reduction"], resolved["stages"] = _resolve_reduction(
            resolved["reduction"], options.get("stages"), arch.family
        )
        resolved["bias"] = _parse_bool("bias", resolved["bias"])
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
        from senet.models.weights import load_weights, options_for_weights, read_state

        state = read_state(weights)
        return load_weights(build(name, **options_for_weights(name, state, options)), state)
    arch, has_se = _arch(name)
    opts = validate_options(name, options)
    kwargs = dict(arch.kwargs)
    se = None
    if has_se:
        per_stage = stage_reductions(opts, arch.family)
        uniform = opts["reduction"] if isinstance(opts["reduction"], int) else 16
        se = SEConfig(**{**{k: opts[k] for k in SE_DEFAULTS}, "reduction": uniform})
        kwargs["se_stages"] = tuple(per_stage)
        if not isinstance(opts["reduction"], int):
            kwargs["stage_reductions"] = per_stage
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

