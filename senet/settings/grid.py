"""Grid files: parse `experiments/**/*.toml` into validated points.

A grid file holds shared settings at the top level, `[axes]` whose lists are
crossed into points, and `[[variants]]` rows that are added as they are (for
tables that are not a product, such as "SE in stage 2 only / 3 only / all", or
a plain baseline row). Settings are one flat namespace: the grid-safe keys of
`senet train` plus the model options. Everything is checked before anything is
queued, and errors name `file:key`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from senet.errors import SenetError
from senet.settings.config import GRID_KEYS, WORKER_KEYS

EXPERIMENTS_DIR = "experiments"

META_KEYS = ("name", "title", "description", "paper_table", "paper_ref", "baseline", "seeds",
             "claims")
# A grid's settings are one flat namespace: TrainConfig's grid keys plus the model options.
# Both lists are defined once, in senet.config and senet.models; the model options are
# looked up when a grid is parsed, because importing the models imports torch.


def model_option_keys() -> tuple[str, ...]:
    from senet.models import OPTION_NAMES

    return OPTION_NAMES


def setting_keys() -> tuple[str, ...]:
    return (*GRID_KEYS, *model_option_keys())


DATASETS = ("builtin", "cifar10", "cifar100", "imagenet")
REQUIRED_KEYS = ("model", "dataset", "preset")


@dataclass(frozen=True)
class Point:
    """One row of a grid: a readable label and the settings that differ from defaults."""

    id: str
    label: str
    settings: dict[str, Any]

    @property
    def model(self) -> str:
        return self.settings["model"]

    def model_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k in model_option_keys()}


@dataclass(frozen=True)
class AdaptiveSeeds:
    """`seeds = { min = 2, max = 8 }`: every point starts with seeds 0..min-1; the queue
    adds a seed to a point while a claim it takes part in is undecided, up to max
    (senet.queue.adaptive). ``alpha``: the error rate the claims are decided at."""

    min: int
    max: int
    alpha: float = 0.05


ADAPTIVE_KEYS = ("min", "max", "alpha")
MAX_ADAPTIVE_SEEDS = 40  # the stopping rule's boundaries are simulated up to this many


@dataclass
class Grid:
    name: str
    path: Path
    title: str
    paper_table: str | None
    paper_ref: str | None
    seeds: list[int]
    points: list[Point] = field(default_factory=list)
    baseline: str | None = None  # id of the row the others are compared against
    adaptive: AdaptiveSeeds | None = None  # seeds = {min, max}: `seeds` are the first min
    # The file's `claims = [...]` tables as written; the analysis package judges them, so
    # nothing else reads the grid file again.
    claims: list[dict[str, Any]] = field(default_factory=list)

    def point(self, point_id: str) -> Point:
        for p in self.points:
            if p.id == point_id:
                return p
        raise KeyError(point_id)


def point_id(settings: dict[str, Any]) -> str:
    """A short hash of the canonical settings, so the same row keeps its id across edits
    of the file that do not change what it trains (reordering, relabelling)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:10]


def is_se_model(model: str) -> bool:
    return model.startswith("se_")


def model_family(model: str) -> str:
    from senet.models import family

    return family(model)


# ---------------------------------------------------------------------------
# Finding grid files


def experiments_dirs() -> list[Path]:
    """Where grid names are looked up: ./experiments first, then the repository's own."""
    here = Path.cwd() / EXPERIMENTS_DIR
    repo = Path(__file__).resolve().parents[2] / EXPERIMENTS_DIR
    dirs = [here]
    if repo.resolve() != here.resolve():
        dirs.append(repo)
    return [d for d in dirs if d.is_dir()]


def available_grids() -> list[str]:
    names: set[str] = set()
    for root in experiments_dirs():
        names.update(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.toml"))
    return sorted(names)


def resolve_grid_path(spec: str) -> Path:
    """A path to a .toml file, or a grid name such as `cifar10/reduction` or `demo`."""
    path = Path(spec)
    if path.is_file():
        return path.resolve()  # absolute, so the queue's record of it works from anywhere
    name = spec.removesuffix(".toml")  # `cifar10/reduction.toml` names a known grid too
    for root in experiments_dirs():
        candidate = root / f"{name}.toml"
        if candidate.is_file():
            return candidate
    choices = ", ".join(available_grids()) or "none found"
    if spec.endswith(".toml"):
        raise SenetError(f"grid file {spec} does not exist; give a path or one of: {choices}")
    raise SenetError(f"unknown grid {spec!r}; give a .toml path or one of: {choices}")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a grid, or None. A grid's name becomes folders (tables and
    figures go to results/<name>/), MLflow experiment names and log lines: it must stay
    inside its folder and on one line."""
    if not name or name != name.strip():
        return "expected a non-empty name without outer spaces"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "control characters (a newline, a tab...) are not allowed"
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return "an absolute path is not a name; give folders relative to results/, like a/b"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "every part between slashes must be a folder name (no '..', '.' or empty part)"
    return None


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot label a point, or None: labels are one line (log lines, tables)."""
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in label):
        return "labels are one line: control characters (a newline, a tab...) are not allowed"
    return None


def grid_name(path: Path) -> str:
    """A grid's identity in the queue and in MLflow; two different files never share one
    by accident. `experiments/cifar10/reduction.toml` -> `cifar10/reduction`; elsewhere
    the `name = "..."` the file declares, else `<parent folder>/<stem>` (a bare stem let
    copies of cifar10/ and cifar100/reduction.toml merge into one grid)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == EXPERIMENTS_DIR:
            return resolved.relative_to(parent).with_suffix("").as_posix()
    declared = _declared_name(resolved)
    if declared:
        problem = name_problem(declared)
        if problem:
            raise SenetError(f"{_display(resolved)}:name: {declared!r}: {problem}")
        return declared
    folder = resolved.parent.name
    return f"{folder}/{resolved.stem}" if folder else resolved.stem


def _declared_name(path: Path) -> str | None:
    try:
        value = tomllib.loads(path.read_text()).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None  # load_grid reports the broken file with its own line
    return value if isinstance(value, str) and value.strip() else None


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------
# Parsing and validation


def read_grid_file(spec: str | Path) -> tuple[str, Path, dict[str, Any]]:
    """(name for errors, path, parsed TOML) of a grid or search file."""
    path = resolve_grid_path(str(spec))
    where = _display(path)
    try:
        return where, path, tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SenetError(f"{where}: invalid TOML: {exc}") from None


def load_grid(spec: str | Path, preset: str | None = None) -> Grid:
    """Parse and fully validate a grid; raises SenetError naming `file:key`.

    ``preset`` (or a spec ending in ``@PRESET``, e.g. `imagenet/gate@imagenet-ablation-plateau`)
    trains every point under that protocol instead of the file's: the grid is then named
    `<grid>@<preset>`, so its tickets, runs and tables stay apart from the file's own."""
    base, named = split_protocol(str(spec))
    if preset is not None and named is not None and preset != named:
        raise SenetError(f"grid {spec}: it names preset {named!r} and --preset gives "
                         f"{preset!r}; give one")
    preset = preset if preset is not None else named
    where, path, data = read_grid_file(base)
    if preset is None or not _changes_protocol(data, preset):
        return _Parser(where, path, data).parse()
    grid = _Parser(where, path, _with_protocol(where, data, preset)).parse()
    grid.name = f"{grid.name}{PROTOCOL_MARK}{preset}"
    grid.title = f"{grid.title} (protocol: preset {preset})"
    return grid


PROTOCOL_MARK = "@"


def split_protocol(spec: str) -> tuple[str, str | None]:
    """`imagenet/gate@imagenet-ablation-plateau` -> (`imagenet/gate`,
    `imagenet-ablation-plateau`); a spec without the mark (or a file that has one in its
    name) -> (spec, None)."""
    if PROTOCOL_MARK not in spec or Path(spec).is_file():
        return spec, None
    base, _, preset = spec.rpartition(PROTOCOL_MARK)
    if not base or not preset:
        raise SenetError(f"grid {spec!r}: expected GRID{PROTOCOL_MARK}PRESET, e.g. "
                         f"imagenet/gate{PROTOCOL_MARK}imagenet-ablation-plateau")
    return base, preset


def _changes_protocol(data: dict[str, Any], preset: str) -> bool:
    rows = [*data.get("variants", []), data.get("axes", {})]
    return data.get("preset") != preset or any(
        isinstance(row, dict) and "preset" in row for row in rows)


def _with_protocol(where: str, data: dict[str, Any], preset: str) -> dict[str, Any]:
    """The grid's data with every point under ``preset``. Only a shipped preset's name is
    taken: the grid's name carries it, and must find the same file again later."""
    from senet.settings.config import available_presets

    if preset not in available_presets():
        raise SenetError(f"--preset {preset!r}: give one of {', '.join(available_presets())} "
                         "(for a preset file of your own, set preset = \"FILE\" in a copy "
                         "of the grid)")
    if "preset" in data.get("axes", {}):
        raise SenetError(f"{where}:axes.preset: the grid varies the preset itself, so "
                         f"--preset {preset} cannot replace it; queue the grid as it is")
    out = {**data, "preset": preset}
    if isinstance(data.get("variants"), list):
        out["variants"] = [{k: v for k, v in row.items() if k != "preset"}
                           if isinstance(row, dict) else row for row in data["variants"]]
    return out


class _Parser:
    """Keeps the file name and the origin of every setting, so errors can point at them."""

    def __init__(self, where: str, path: Path, data: dict[str, Any]) -> None:
        self.where = where
        self.path = path
        self.data = data
        self._resolved: dict[str, str] = {}
        self._origins: list[str] = []  # per row, in order: "axes" or "variants[i]"

    def fail(self, key: str, message: str) -> SenetError:
        return SenetError(f"{self.where}:{key}: {message}")

    def parse(self) -> Grid:
        data = dict(self.data)
        axes = data.pop("axes", {})
        variants = data.pop("variants", [])
        meta = {k: data.pop(k) for k in META_KEYS if k in data}
        base = self._settings(data, prefix="")
        for key in REQUIRED_KEYS:
            if key not in base:
                raise self.fail(key, f"missing; every grid needs {', '.join(REQUIRED_KEYS)}")

        rows = self._axis_rows(axes) + self._variant_rows(variants)
        if not rows:
            raise self.fail("axes", "the grid has no points; add [axes] lists or [[variants]]")

        points = [self._point(base, label, overrides) for label, overrides in rows]
        self._check_unique(points)
        baseline = self._baseline(meta, points)
        declared = self._string(meta, "name", default=None)
        if declared is not None and name_problem(declared):
            raise self.fail("name", f"{declared!r}: {name_problem(declared)}")
        seeds = meta.get("seeds", [0])
        adaptive = self._adaptive(seeds) if isinstance(seeds, dict) else None
        return Grid(
            name=grid_name(self.path),
            path=self.path,
            title=self._string(meta, "title", default=grid_name(self.path)),
            paper_table=self._string(meta, "paper_table", default=None),
            paper_ref=self._string(meta, "paper_ref", default=None),
            seeds=list(range(adaptive.min)) if adaptive else self._seeds(seeds),
            points=points,
            baseline=baseline,
            adaptive=adaptive,
            claims=list(meta.get("claims", [])),
        )

    # -- pieces of the file

    def _string(self, meta: dict[str, Any], key: str, default: str | None) -> str | None:
        value = meta.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def _baseline(self, meta: dict[str, Any], points: list[Point]) -> str | None:
        label = self._string(meta, "baseline", default=None)
        if label is None:
            return None
        for p in points:
            if label in (p.label, p.id):
                return p.id
        labels = ", ".join(repr(p.label) for p in points)
        raise self.fail("baseline", f"no point is labelled {label!r}; labels are {labels}")

    def _seeds(self, value: Any) -> list[int]:
        ok = isinstance(value, list) and value and all(_is_int(s) and s >= 0 for s in value)
        if not ok:
            raise self.fail("seeds", f"expected a non-empty list of integers >= 0 or a table "
                                     f"{{ min = 2, max = 8 }}, got {value!r}")
        if len(set(value)) != len(value):
            raise self.fail("seeds", f"repeated seed in {value!r}")
        return list(value)

    def _adaptive(self, table: dict[str, Any]) -> AdaptiveSeeds:
        unknown = sorted(set(table) - set(ADAPTIVE_KEYS))
        if unknown:
            raise self.fail(f"seeds.{unknown[0]}", f"unknown key; adaptive seeds take "
                                                   f"{', '.join(ADAPTIVE_KEYS)}")
        for key in ("min", "max"):
            if key not in table:
                raise self.fail("seeds", f"adaptive seeds need both min and max, e.g. "
                                         f"{{ min = 2, max = 8 }}; {key} is missing")
        low, high = table["min"], table["max"]
        if not _is_int(low) or low < 2:
            raise self.fail("seeds.min", f"expected an integer >= 2 (a claim needs two seeds "
                                         f"per row to judge its noise), got {low!r}")
        if not _is_int(high) or not low <= high <= MAX_ADAPTIVE_SEEDS:
            raise self.fail("seeds.max", f"expected an integer from min ({low}) to "
                                         f"{MAX_ADAPTIVE_SEEDS}, got {high!r}")
        alpha = table.get("alpha", 0.05)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
            raise self.fail("seeds.alpha", f"expected an error rate between 0 and 0.5, "
                                           f"got {alpha!r}")
        return AdaptiveSeeds(low, high, float(alpha))

    def _settings(self, table: dict[str, Any], prefix: str) -> dict[str, tuple[Any, str]]:
        """Checks keys and value types; returns key -> (value, origin `prefix.key`)."""
        out: dict[str, tuple[Any, str]] = {}
        for key, value in table.items():
            origin = f"{prefix}{key}"
            if key in WORKER_KEYS:
                raise self.fail(origin, f"not a grid setting: {WORKER_KEYS[key]}")
            if key not in setting_keys():
                allowed = ", ".join(sorted(setting_keys()))
                top = "" if prefix else (
                    f"; top-level keys are also {', '.join(META_KEYS)}, [axes], [[variants]]"
                )
                raise self.fail(origin, f"unknown key {key!r}; settings are {allowed}{top}")
            out[key] = (_check_train_value(key, value, lambda m, o=origin: self.fail(o, m)), origin)
        return out

    def _axis_rows(self, axes: Any) -> list[tuple[str, dict[str, tuple[Any, str]]]]:
        if not isinstance(axes, dict):
            raise self.fail("axes", "expected a table of lists, e.g. [axes] reduction = [4, 8]")
        if not axes:
            return []
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise self.fail(f"axes.{key}", f"expected a non-empty list, got {values!r}")
            seen: list[Any] = []
            for value in values:
                if any(_same_value(value, other) for other in seen):
                    raise self.fail(f"axes.{key}", f"value {_fmt(value)} is listed twice in "
                                                   f"{values!r}; list each value once")
                seen.append(value)
        names = list(axes)
        rows = []
        for combo in itertools.product(*(axes[k] for k in names)):
            table = dict(zip(names, combo, strict=True))
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in table.items())
            self._origins.append("axes")
            rows.append((label, self._settings(table, prefix="axes.")))
        return rows

    def _variant_rows(self, variants: Any) -> list[tuple[str, dict[str, tuple[Any, str]]]]:
        if not isinstance(variants, list):
            raise self.fail("variants", "expected [[variants]] tables with a label each")
        rows = []
        for i, variant in enumerate(variants):
            prefix = f"variants[{i}]."
            if not isinstance(variant, dict):
                raise self.fail(f"variants[{i}]", "expected a table")
            variant = dict(variant)
            label = variant.pop("label", None)
            if not isinstance(label, str) or not label.strip():
                raise self.fail(f"{prefix}label", "every variant needs a non-empty label string")
            self._origins.append(f"variants[{i}]")
            rows.append((label, self._settings(variant, prefix=prefix)))
        return rows

    # -- one point

    def _point(
        self,
        base: dict[str, tuple[Any, str]],
        label: str,
        overrides: dict[str, tuple[Any, str]],
    ) -> Point:
        merged = {**base, **overrides}
        model, model_origin = merged["model"]
        self._check_model(model, model_origin, label)
        if not is_se_model(model):
            from senet.models import SE_OPTION_NAMES

            for key in SE_OPTION_NAMES:
                if key not in merged:
                    continue
                if key in overrides:
                    raise self.fail(
                        merged[key][1],
                        f"SE option {key!r} on plain model {model!r} (point {label!r}); "
                        "use an se_ model or drop the option",
                    )
                # A plain baseline row inherits the shared settings but not SE options.
                del merged[key]
        dataset, dataset_origin = merged["dataset"]
        wanted = _dataset_family(dataset)
        if dataset != "builtin" and wanted and model_family(model) != wanted:
            only_dataset_varies = "dataset" in overrides and "model" not in overrides
            blame = dataset_origin if only_dataset_varies else model_origin
            raise self.fail(
                blame,
                f"model {model!r} is a {model_family(model)} model but the dataset is "
                f"{dataset!r} (point {label!r})",
            )
        resolved = self._check_options(model, merged, label)
        settings = {k: v for k, (v, _) in merged.items()}
        point = Point(id=point_id(settings), label=label, settings=settings)
        # What actually trains, defaults filled in: two rows equal here are one point.
        self._resolved[point.label] = point_id(
            {**{k: v for k, v in settings.items() if k in GRID_KEYS}, **resolved}
        )
        return point

    def _check_model(self, model: str, origin: str, label: str) -> None:
        from senet.models import MODEL_NAMES

        if model not in MODEL_NAMES:
            raise self.fail(
                origin, f"unknown model {model!r} (point {label!r}); choose one of "
                f"{', '.join(MODEL_NAMES)}"
            )

    def _check_options(
        self, model: str, merged: dict[str, tuple[Any, str]], label: str
    ) -> dict[str, Any]:
        """Adds options one at a time so a rejected combination is blamed on the key
        whose arrival made it invalid, wherever in the file that key came from."""
        from senet.models import validate_options

        options: dict[str, Any] = {}
        defaults = validate_options(model, {})
        for key in model_option_keys():
            if key not in merged:
                continue
            value, origin = merged[key]
            if key in defaults and _has_bool(value) and not isinstance(defaults[key], bool):
                raise self.fail(origin, f"{key}={_fmt(value)} is not a valid value "
                                        f"(point {label!r}); expected a number or name "
                                        f"like the default {defaults[key]!r}")
            options[key] = value
            try:
                validate_options(model, dict(options))
            except SenetError as exc:
                raise self.fail(origin, f"{exc} (point {label!r}, model {model!r})") from None
        return validate_options(model, options)

    def _check_unique(self, points: list[Point]) -> None:
        by_key: dict[str, tuple[Point, str]] = {}
        labels: set[str] = set()
        for p, where in zip(points, self._origins, strict=True):
            if label_problem(p.label):
                raise self.fail(where, f"label {p.label!r}: {label_problem(p.label)}")
            if p.label in labels:
                raise self.fail(where, f"two points share the label {p.label!r}")
            labels.add(p.label)
            key = self._resolved[p.label]
            if key in by_key:
                first, first_where = by_key[key]
                raise self.fail(
                    where,
                    f"points {first.label!r} ({first_where}) and {p.label!r} train the same "
                    "settings (after filling in defaults)",
                )
            by_key[key] = (p, where)


def _dataset_family(dataset: str) -> str | None:
    if dataset.startswith("folder:"):
        return None  # any image size; the models decide
    return "imagenet" if dataset == "imagenet" else "cifar"


def _same_value(a: Any, b: Any) -> bool:
    """Equal as TOML values: `true` is not `1`, `4` is `4.0`."""
    return type(a) is type(b) and a == b or (
        not isinstance(a, bool) and not isinstance(b, bool)
        and isinstance(a, int | float) and isinstance(b, int | float) and a == b)


def _has_bool(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


def _non_finite(value: Any) -> bool:
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return isinstance(value, float) and not math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _check_train_value(key: str, value: Any, fail) -> Any:
    """Type and range checks for train settings; model options are left to the models
    module, which knows their choices. Returns the value in canonical form."""
    if _non_finite(value):
        # TOML reads 1e400 as inf; it would be queued and fail only at work time.
        raise fail(f"{value!r} is not a finite number; give a finite value")
    if key in ("epochs", "batch_size", "subset"):
        if not _is_int(value) or value < 1:
            raise fail(f"expected an integer >= 1, got {value!r}")
    elif key == "workers":
        if not _is_int(value) or value < 0:
            raise fail(f"expected an integer >= 0, got {value!r}")
    elif key == "lr":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise fail(f"expected a number > 0, got {value!r}")
        return float(value)  # 1 and 1.0 must hash to the same point id
    elif key in ("compile", "amp"):
        if not isinstance(value, bool):
            raise fail(f"expected true or false, got {value!r}")
    elif key in ("model", "dataset", "preset"):
        if not isinstance(value, str):
            raise fail(f"expected a string, got {value!r}")
        if key == "dataset" and value not in DATASETS and not value.startswith("folder:"):
            choices = ", ".join(DATASETS)
            raise fail(f"unknown dataset {value!r}; choose one of {choices} or folder:PATH")
        if key == "preset":
            _check_preset(value, fail)
    return value


def _check_preset(value: str, fail) -> None:
    from senet.settings.config import available_presets

    if value.endswith(".toml"):
        if not Path(value).is_file():
            raise fail(f"preset file {value} does not exist")
        return
    presets = available_presets()
    if value not in presets:
        raise fail(f"unknown preset {value!r}; choose one of {', '.join(presets) or '(none)'}")
