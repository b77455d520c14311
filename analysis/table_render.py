"""Write a GridTable as Markdown (readable on GitHub), CSV and LaTeX."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.tables import MARK_LEGEND, GridTable

_DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "builtin": "Built-in synthetic data",
}


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_mean_std(mean: float, std: float) -> str:
    if _missing(mean):
        return "—"
    return f"{mean:.2f}" if _missing(std) else f"{mean:.2f} ± {std:.2f}"


def _signed(x: float, digits: int = 2) -> str:
    # Round first so that -0.001 prints as +0.00, not -0.00.
    return f"{round(x, digits) + 0.0:+.{digits}f}"


def fmt_diff(row: pd.Series, key: str, baseline_label: str) -> str:
    if row["reference"] == row["label"]:
        return "baseline"
    d, low, high = row[f"d_{key}"], row[f"d_{key}_low"], row[f"d_{key}_high"]
    if _missing(d):
        return "—"
    ci = "n < 2" if _missing(low) else f"{_signed(low)}, {_signed(high)}"
    text = f"{_signed(d)} [{ci}]"
    if row["reference"] != baseline_label:
        text += f" vs {row['reference']}"
    return text


def fmt_gmacs(x: float) -> str:
    if _missing(x):
        return ""
    # One decimal more than the paper prints: at two, SE_Stage_2's 3.8659 would show as
    # 3.87 beside the paper's 3.86 and hide that it costs next to nothing.
    return f"{x:.3f}" if x >= 0.01 else f"{x:.4f}"


def fmt_params(count: float, extra: int = 0) -> str:
    """Millions with the usual digits (25.6M, 0.27M), plus ``extra`` more."""
    if _missing(count):
        return ""
    m = count / 1e6
    if m >= 10:
        return f"{m:.{1 + extra}f}M"
    return f"{m:.{2 + extra}f}M" if m >= 0.01 else f"{count / 1e3:.{1 + extra}f}K"


def params_format(counts: Iterable[float]) -> Callable[[float], str]:
    """fmt_params with as many digits as the table needs for different counts to read
    differently: SE-ResNet-20's 274,655 are 0.27M beside ResNet-20's 272,282, also
    0.27M at two decimals, 0.275M against 0.272M at three (SE in stage 2 alone: 25.58M
    against ResNet-50's 25.56M)."""
    values = {c for c in counts if not _missing(c)}
    for extra in range(4):
        if len({fmt_params(c, extra) for c in values}) == len(values):
            break
    return lambda count: fmt_params(count, extra)


def fmt_paper(value: float | None, diff: float | None, unit: str = "", digits: int = 2) -> str:
    if _missing(value):
        return ""
    text = f"{value:.{digits}f}{unit}"
    return text if _missing(diff) else f"{text} ({_signed(diff, digits)})"


def _cells(table: GridTable) -> tuple[list[str], list[list[str]]]:
    """Header and display cells, shared by the Markdown and LaTeX writers. Paper columns
    the paper's table leaves empty for every row (e.g. GFLOPs in Table 10) are left out."""
    show_params = params_format(table.rows["params"])
    columns: list[tuple[str, Any]] = [
        ("variant", lambda r: r["label"] + (" (baseline)" if r["is_baseline"] else "")),
        ("n", lambda r: f"n = {r['n']}/{r['n_expected']}" if r["n_expected"] else "—"),
        ("top-1 err", lambda r: fmt_mean_std(r["top1_mean"], r["top1_std"])),
        ("top-5 err", lambda r: fmt_mean_std(r["top5_mean"], r["top5_std"])),
        ("Δ top-1 [95% CI]", lambda r: fmt_diff(r, "top1", baseline_label)),
        ("Δ top-5 [95% CI]", lambda r: fmt_diff(r, "top5", baseline_label)),
        ("GFLOPs", lambda r: fmt_gmacs(r["gmacs"])),
        ("params", lambda r: show_params(r["params"])),
    ]
    if table.paper is not None:
        columns += [
            ("paper row", lambda r: r["paper_label"] or "(no row)"),
            ("paper top-1 (Δ)", lambda r: fmt_paper(r["paper_top1"], r["paper_d_top1"])),
            ("paper top-5 (Δ)", lambda r: fmt_paper(r["paper_top5"], r["paper_d_top5"])),
            ("paper GFLOPs", lambda r: fmt_paper(r["paper_gflops"], None)),
            ("paper params", lambda r: fmt_paper(r["paper_params_m"], None, "M", 1)),
            ("reproduces top-1 / top-5", lambda r: f"{r['repro_top1']} / {r['repro_top5']}"),
        ]
    columns.append(("status", lambda r: r["status"]))
    if not table.shows_top5:
        columns = [c for c in columns if "top-5" not in c[0]]
        columns = [
            ("reproduces top-1", lambda r: r["repro_top1"]) if name.startswith("reproduces")
            else (name, cell)
            for name, cell in columns
        ]  # fmt: skip
    baseline_label = table.spec.baseline_point.label
    records = [r for _, r in pd.concat([table.rows, table.paper_rows]).iterrows()]
    body_by_column = [[cell(r) for r in records] for _, cell in columns]
    keep = [
        i for i, (name, _) in enumerate(columns)
        if not name.startswith("paper ") or any(body_by_column[i])
    ]  # fmt: skip
    header = [columns[i][0] for i in keep]
    body = [[body_by_column[i][j] for i in keep] for j in range(len(records))]
    return header, body


def describe(table: GridTable) -> list[str]:
    """The caption: what the numbers are and where the paper's come from."""
    spec = table.spec
    dataset = _DATASET_NAMES.get(str(spec.dataset), str(spec.dataset or "unknown dataset"))
    epoch = "final epoch" if table.metric == "final" else "best epoch"
    top5 = "" if table.shows_top5 else (
        f" Top-5 is left out: with {table.num_classes} classes it says next to nothing."
    )
    lines = [
        f"{dataset}, validation error (%) at the {epoch}: mean ± std over seeds; "
        f"n = finished seeds / seeds in the grid.{top5}",
        f"Δ: difference from the baseline row ({spec.baseline_point.label}) with a 95% Welch t "
        "interval over seeds. GFLOPs are multiply-adds (GMACs), as in the paper.",
    ]
    if table.paper is not None:
        p = table.paper
        lines.append(
            f"Paper: {p.table} of {table.citation}: {p.title}; {p.setting}. "
            "In brackets, the paper's difference between the same two rows (its row for our "
            "reference row; a Δ cell ending in 'vs X' names a reference other than the baseline)."
        )
    else:
        lines.append(f"Paper: {table.paper_note}.")
    lines.append(protocol_line(table))
    return lines


def protocol_line(table: GridTable) -> str:
    """Which protocol (preset) our runs used, and which one produced the paper column."""
    groups: dict[str, list[str]] = {}
    for point in table.spec.points:
        groups.setdefault(str(point.settings.get("preset", "unknown")), []).append(point.label)
    if len(groups) == 1:
        ours = _preset_words(next(iter(groups)))
    else:
        ours = "; ".join(f"{_preset_words(name)} for {', '.join(labels)}"
                         for name, labels in groups.items())
    line = f"Protocol: our runs used {ours}."
    if table.paper is not None and table.paper.protocol:
        line += f" The paper column: {table.paper.protocol}."
    return line


def _preset_words(name: str) -> str:
    from senet.errors import SenetError
    from senet.settings.config import load_preset

    try:
        description = load_preset(name).get("description")
    except SenetError:
        description = None  # a preset file that is not here any more: its name alone
    return f"preset {name}" + (f" ({description})" if description else "")


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(table: GridTable) -> str:
    header, body = _cells(table)
    title = table.spec.title
    heading = table.spec.name if title == table.spec.name else f"{table.spec.name}: {title}"
    out = [f"# {heading}", ""]
    out += [f"{line}  " for line in describe(table)]
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in body]
    if table.paper is not None:
        out += ["", f"Reproduces: {MARK_LEGEND}."]
    if table.verdicts:
        out += ["", "Verdicts on the claims:", *(f"- {_md_escape(v)}" for v in table.verdicts)]
    if table.notes:
        out += ["", "Notes:", *(f"- {_md_escape(n)}" for n in table.notes)]
    return "\n".join(out) + "\n"


_CSV_COLUMNS = [
    "point", "label", "is_baseline", "reference", "n", "n_expected",
    "top1_mean", "top1_std", "top5_mean", "top5_std",
    "d_top1", "d_top1_low", "d_top1_high", "d_top5", "d_top5_low", "d_top5_high",
    "gmacs", "params",
    "paper_label", "paper_top1", "paper_top5", "paper_gflops", "paper_params_m",
    "paper_d_top1", "paper_d_top5", "repro_top1", "repro_top5", "status",
]  # fmt: skip


def to_csv(table: GridTable) -> str:
    frame = pd.concat([table.rows, table.paper_rows])[_CSV_COLUMNS].copy()
    frame.insert(0, "grid", table.spec.name)
    frame.insert(1, "metric", table.metric)
    frame["paper_table"] = table.paper.table if table.paper is not None else ""
    frame["paper_note"] = table.paper_note
    return frame.to_csv(index=False, float_format="%.10g")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip
# Applied after escaping; these need math mode or packages (amssymb for \checkmark).
_LATEX_SYMBOLS = {
    "±": r"$\pm$", "Δ": r"$\Delta$", "—": "---", "✓": r"\checkmark{}", "✗": r"$\times$",
    "≥": r"$\geq$", "<": r"$<$",
}  # fmt: skip


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, latex in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, latex)
    return out


def to_latex(table: GridTable) -> str:
    header, body = _cells(table)
    caption = " ".join(describe(table))
    if table.paper is not None:
        caption += f" Reproduces: {MARK_LEGEND}."
    if table.verdicts:
        caption += " Verdicts: " + " ".join(table.verdicts)
    label = "tab:" + table.spec.name.replace("/", "-")
    lines = [
        "% Needs \\usepackage{booktabs,graphicx,amssymb}.",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        "\\resizebox{\\linewidth}{!}{%",
        "\\begin{tabular}{l" + "c" * (len(header) - 2) + "l}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in header) + " \\\\",
        "\\midrule",
        *(" & ".join(latex_escape(c) for c in cells) + " \\\\" for cells in body),
        "\\bottomrule",
        "\\end{tabular}}",
        "\\end{table}",
    ]
    if table.notes:
        lines += ["% Notes:", *(f"% - {n}" for n in table.notes)]
    return "\n".join(lines) + "\n"


def write_table(table: GridTable, out_root: str | Path) -> list[Path]:
    """``<out>/<dataset>/<grid>.{md,csv,tex}`` plus the per-seed values in ``*_seeds.csv``."""
    folder = Path(out_root) / table.spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / table.spec.short_name
    written = []
    for suffix, text in ((".md", to_markdown(table)), (".csv", to_csv(table)),
                         (".tex", to_latex(table))):  # fmt: skip
        path = stem.with_suffix(suffix)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    seeds_path = folder / f"{table.spec.short_name}_seeds.csv"
    table.seeds.to_csv(seeds_path, index=False, float_format="%.10g")
    written.append(seeds_path)
    return written
