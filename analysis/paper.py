"""The paper's reported numbers (analysis/paper_numbers.toml) and how grid points map to them."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from senet.errors import SenetError

_DATA = "paper_numbers.toml"


@dataclass(frozen=True)
class PaperRow:
    id: str
    label: str
    match: dict[str, Any]
    top1: float | None = None
    top5: float | None = None
    gflops: float | None = None
    params_m: float | None = None
    vs: str | None = None  # reference row for the direction, when not the table's baseline
    from_reference: bool = False  # a shared ablation baseline from [reference]
    paper_only: bool = False  # shown as its own row, never matched to a grid point

    def matches(self, settings: Mapping[str, Any]) -> bool:
        return all(
            key in settings and normalize_value(settings[key]) == normalize_value(want)
            for key, want in self.match.items()
        )


# What a claim can say, each a kind analysis/verdicts.py judges from seeds:
#   better_than / worse_than ROW   lower / higher error than ROW
#   within = D, of = ROW            at most D points more error than ROW (one-sided)
#   similar_to = ROW, margin = D    within D points of ROW either way (equivalence)
#   not_monotone = [ROW, ...]       error does not rise steadily along the rows as
#                                   listed (e.g. from most to least capacity): some row
#                                   has more error than a row listed after it
PAIR_KINDS = ("better_than", "worse_than", "within", "similar_to")
SET_KINDS = ("not_monotone",)
CLAIM_KINDS = (*PAIR_KINDS, *SET_KINDS)


@dataclass(frozen=True)
class Claim:
    """What the paper says some rows show. A pair claim compares ``row`` with ``ref``; a
    set claim (not_monotone) is about ``rows`` in their order. Rows are paper row ids, or
    point labels for a grid's own claims. ``margin`` is in error points."""

    text: str
    row: str
    ref: str
    kind: str
    metric: str = "top1"
    margin: float = 0.0
    rows: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every row the claim needs, in order."""
        return self.rows if self.kind in SET_KINDS else (self.row, self.ref)


def parse_claim(data: Mapping[str, Any], where: str) -> Claim:
    """A claim from its TOML form, e.g. ``{claim = "...", row = "max", worse_than = "avg"}``."""
    kinds = [k for k in CLAIM_KINDS if k in data]
    shape = ("a claim needs `claim` and one of: `row` with better_than, worse_than, within "
             "(with `of`) or similar_to (with `margin`); or not_monotone = [ROWS]")
    if "claim" not in data or len(kinds) != 1:
        raise SenetError(f"{where}: {shape}; got {dict(data)}")
    kind, text = kinds[0], str(data["claim"])
    metric = str(data.get("metric", "top1"))
    if metric not in ("top1", "top5"):
        raise SenetError(f"{where}: claim {text!r}: metric {metric!r}: use top1 or top5")
    if kind in SET_KINDS:
        rows = data[kind]
        if not isinstance(rows, list) or len(rows) < 3 or len(set(rows)) != len(rows):
            raise SenetError(f"{where}: claim {text!r}: {kind} needs a list of at least "
                             f"3 distinct rows, got {rows!r}")
        return Claim(text, str(rows[0]), str(rows[-1]), kind, metric,
                     rows=tuple(str(r) for r in rows))
    if "row" not in data:
        raise SenetError(f"{where}: {shape}; got {dict(data)}")
    row = str(data["row"])
    if kind == "within":
        if "of" not in data:
            raise SenetError(f"{where}: claim {text!r}: `within` needs `of = ROW`")
        return Claim(text, row, str(data["of"]), kind, metric, _margin(data["within"], text, where))
    if kind == "similar_to":
        if "margin" not in data:
            raise SenetError(f"{where}: claim {text!r}: `similar_to` needs `margin = POINTS`")
        return Claim(text, row, str(data[kind]), kind, metric,
                     _margin(data["margin"], text, where))
    return Claim(text, row, str(data[kind]), kind, metric)


def _margin(value: Any, text: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SenetError(f"{where}: claim {text!r}: the margin must be a number of error "
                         f"points > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PaperTable:
    key: str
    title: str
    table: str | None = None
    dataset: str | None = None
    setting: str = ""
    baseline: str | None = None
    rows: tuple[PaperRow, ...] = ()
    aliases: tuple[str, ...] = ()
    no_table: str | None = None  # why the paper has nothing to compare with
    claims: tuple[Claim, ...] = ()
    protocol: str = ""  # how the paper trained the rows it prints, in words

    @property
    def has_numbers(self) -> bool:
        return any(r.top1 is not None or r.top5 is not None for r in self.rows)

    def row(self, row_id: str) -> PaperRow | None:
        return next((r for r in self.rows if r.id == row_id), None)

    def match(self, settings: Mapping[str, Any]) -> PaperRow | None:
        """The most specific row whose settings all agree with ``settings``."""
        hits = [r for r in self.rows if not r.paper_only and r.matches(settings)]
        return max(hits, key=lambda r: len(r.match)) if hits else None


@dataclass(frozen=True)
class PaperBook:
    paper: str
    version: str
    tables: tuple[PaperTable, ...] = field(default_factory=tuple)

    @property
    def citation(self) -> str:
        return f"{self.paper} ({self.version})"

    def lookup(self, key: str | None, dataset: str | None) -> tuple[PaperTable | None, str]:
        """The table for a grid's ``paper_table`` key on ``dataset``, or None and the reason."""
        if not key:
            return None, "the grid names no paper table"
        wanted = _norm_key(key)
        named = [t for t in self.tables if wanted in {_norm_key(k) for k in (t.key, *t.aliases)}]
        if not named:
            return None, f"no paper table {key!r} in analysis/{_DATA}"
        for t in named:
            if t.no_table:
                return None, t.no_table
        family = dataset_family(dataset)
        for t in named:
            if dataset_family(t.dataset) == family:
                return t, ""
        where = "; ".join(f"{t.table} reports {_shown(t.dataset)} only" for t in named)
        return None, f"no {_shown(dataset)} row in the paper ({where})"


def normalize_value(value: Any) -> str:
    """Settings as comparable text: TOML ints, run params (strings) and stage lists agree."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(normalize_value(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    return text.strip("[]()").replace(" ", "")


def dataset_family(dataset: str | None) -> str | None:
    """cifar10 / cifar100 / imagenet, whatever the spelling (CIFAR-10, ImageNet, ...)."""
    if not dataset:
        return None
    if dataset.startswith("folder:"):
        return None  # a folder of images is not one of the paper's datasets, whatever its name
    text = dataset.lower().replace("-", "").replace("_", "")
    for name in ("cifar100", "cifar10", "imagenet"):
        if text.startswith(name):
            return name
    return text


def _shown(dataset: str | None) -> str:
    family = dataset_family(dataset)
    if family in ("cifar10", "cifar100"):
        return "CIFAR"
    if family == "imagenet":
        return "ImageNet"
    if dataset == "builtin":
        return "built-in data"
    # A folder of images is shown by its path, as the grid spells it.
    return str(dataset or "unknown dataset")


def _norm_key(key: str) -> str:
    return key.strip().lower().replace(" ", "").replace("_", "")


def _row(data: dict[str, Any], row_id: str | None = None, from_reference: bool = False) -> PaperRow:
    return PaperRow(
        id=row_id or data["id"],
        label=data["label"],
        match=dict(data.get("match", {})),
        top1=data.get("top1"),
        top5=data.get("top5"),
        gflops=data.get("gflops"),
        params_m=data.get("params_m"),
        vs=data.get("vs"),
        from_reference=from_reference,
        paper_only=bool(data.get("paper_only", False)),
    )


def parse_paper_numbers(text: str) -> PaperBook:
    data = tomllib.loads(text)
    reference = {k: _row(v, k, from_reference=True) for k, v in data.get("reference", {}).items()}
    tables = []
    for t in data.get("tables", []):
        rows = [_row(r) for r in t.get("rows", [])]
        for ref in t.get("reference_rows", []):
            if ref not in reference:
                raise SenetError(f"analysis/{_DATA}: unknown reference row {ref!r}")
            rows.append(reference[ref])
        tables.append(
            PaperTable(
                key=t["key"],
                title=t.get("title", t["key"]),
                table=t.get("table"),
                dataset=t.get("dataset"),
                setting=t.get("setting", ""),
                baseline=t.get("baseline"),
                rows=tuple(rows),
                aliases=tuple(t.get("aliases", [])),
                no_table=t.get("no_table"),
                claims=tuple(
                    parse_claim(c, f"analysis/{_DATA} {t['key']}") for c in t.get("claims", [])
                ),
                protocol=t.get("protocol", ""),
            )
        )
    src = data["source"]
    return PaperBook(paper=src["paper"], version=src["version"], tables=tuple(tables))


def load_paper_numbers() -> PaperBook:
    """The numbers shipped with the package."""
    return parse_paper_numbers(resources.files("analysis").joinpath(_DATA).read_text())
