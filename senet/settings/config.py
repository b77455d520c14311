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


def _set_by(why: str, default: Any) -> Any:
    """A field the worker or the queue fills in; a grid file may not set it (``why`` says
    where it comes from instead)."""
    return field(default=default, metadata={"set_by": why})


def _internal(**kwargs: Any) -> Any:
    """A field filled in by code (tracking bookkeeping), never a user setting."""
    return field(metadata={"internal": True}, **kwargs)


@dataclass
class TrainConfig:
    """Everything one training run needs. Options left as None come from the preset.

    The run settings are defined here once: fields without metadata are what a grid may
    vary (GRID_KEYS), ``_set_by`` fields belong to the worker or the queue (WORKER_KEYS)."""

    model: str
    model_options: dict[str, Any] = _internal(default_factory=dict)
    dataset: str = "builtin"
    preset: str = "fast"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    subset: int | None = None
    seed: int = _set_by("list seeds in `seeds = [...]` instead", 0)
    device: str = _set_by("the worker picks it (senet work --devices)", "auto")
    data_root: str | None = _set_by("give it to senet work --data-root", None)
    out: str | None = _set_by("the worker picks it (senet work --runs-dir)", None)
    tracking_uri: str | None = _set_by("give it to senet queue --tracking-uri", None)
    experiment: str = _set_by("each grid gets its own MLflow experiment", "senet")
    resume: bool = _set_by("workers always resume a point from its checkpoint", False)
    compile: bool | None = None  # None: on for ImageNet-size input on CUDA, else off
    cuda_graphs: bool = True  # CUDA graphs where they apply (CUDA, in-memory data)
    fused_se: bool = False  # regional torch.compile of the SE blocks (senet.models.fused_se)
    amp: bool | None = None  # None: bf16 autocast on CUDA, off on CPU
    workers: int = 4
    tags: dict[str, str] = _internal(default_factory=dict)
    parent_run_id: str | None = _internal(default=None)
    run_name: str | None = _internal(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved (config.json, MLflow artifacts): a password in the tracking
        URI is left out, the database driver finds it itself (PGPASSWORD, ~/.pgpass)."""
        from senet.urls import without_password

        saved = dataclasses.asdict(self)
        if self.tracking_uri:
            saved["tracking_uri"] = without_password(self.tracking_uri)
        return saved


_FIELDS = dataclasses.fields(TrainConfig)
# Settings that describe *what* is trained, and so may vary between the points of a grid.
GRID_KEYS: tuple[str, ...] = tuple(f.name for f in _FIELDS if not f.metadata)
# Settings that belong to the worker or the queue, with the reason shown to the user.
WORKER_KEYS: dict[str, str] = {f.name: f.metadata["set_by"] for f in _FIELDS
                               if "set_by" in f.metadata}


def split_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A grid point's flat settings as TrainConfig keyword arguments: its train settings,
    and every other key (grids allow only model options besides) in ``model_options``."""
    kwargs: dict[str, Any] = {k: v for k, v in settings.items() if k in GRID_KEYS}
    kwargs["model_options"] = {k: v for k, v in settings.items() if k not in GRID_KEYS}
    return kwargs


def available_presets() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in PRESET_DIR.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset by name, or a path to a user's own TOML copy of one."""
    path = Path(name).expanduser()
    if name.endswith(".toml") or "/" in name:
        if not path.is_file():
            raise SenetError(f"preset file {name} does not exist; give the path of a preset "
                             f".toml file or one of {', '.join(available_presets())}")
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
