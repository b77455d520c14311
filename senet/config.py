"""Run configuration: a plain dataclass plus protocol presets kept as TOML data."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from senet.errors import SenetError

PRESET_DIR = resources.files("senet") / "presets"


@dataclass
class TrainConfig:
    """Everything one training run needs. Options left as None come from the preset."""

    model: str
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "builtin"
    preset: str = "fast"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    subset: int | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    out: str | None = None
    tracking_uri: str | None = None
    experiment: str = "senet"
    resume: bool = False
    compile: bool = False
    amp: bool | None = None  # None: bf16 autocast on CUDA, off on CPU
    workers: int = 4
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    run_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)} - {
    "model_options",
    "tags",
    "parent_run_id",
    "run_name",
}


def available_presets() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in PRESET_DIR.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset by name, or a path to a user's own TOML copy of one."""
    path = Path(name)
    if name.endswith(".toml") and path.is_file():
        text = path.read_text()
    else:
        candidate = PRESET_DIR / f"{name}.toml"
        if not candidate.is_file():
            raise SenetError(
                f"unknown preset {name!r}; choose one of {', '.join(available_presets())} "
                "or give the path of a preset .toml file"
            )
        text = candidate.read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SenetError(f"preset {name}: invalid TOML: {exc}") from None


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["reduction=8", "squeeze=max"]`` -> dict; a malformed item is a one-line error."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SenetError(f"--set {item!r}: expected key=value, e.g. --set reduction=8")
        out[key.strip()] = value.strip()
    return out
