"""The search report's figure: error against cost for every trial, the Pareto front, the
uniform-r curve and, for SE-ResNet-50, the paper's Table 10."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from analysis.search_report import COSTS, SearchTrial, pareto_front, uniform_curve

# Paper Table 10 is SE-ResNet-50 on ImageNet; it is drawn only for that model.
PAPER_MODEL = "se_resnet50"


def _paper_points() -> list[tuple[float, float, str]]:
    from analysis.paper import load_paper_numbers

    book = load_paper_numbers()
    table = next(t for t in book.tables if t.key == "reduction")
    return [(r.params_m, r.top1, r.label) for r in table.rows
            if r.params_m is not None and r.top1 is not None and "reduction" in r.match]


def front_figure(
    trials: Sequence[SearchTrial], cost: str = "params", model: str | None = None,
    title: str | None = None,
) -> Figure:
    """Error against cost: every trial, the Pareto front, the uniform-r curve, and for
    SE-ResNet-50 the paper's Table 10."""
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = fig.subplots()
    label = COSTS[cost][1]
    others = [t for t in trials if t.uniform_r is None and not t.is_plain]
    ax.scatter([t.cost(cost) for t in others], [t.error for t in others], s=22,
               color="0.6", label="per-stage trials", zorder=2)
    front = pareto_front(trials, cost)
    ax.step([t.cost(cost) for t in front], [t.error for t in front], where="post",
            color="tab:red", lw=1.4, label="Pareto front", zorder=3)
    ax.scatter([t.cost(cost) for t in front], [t.error for t in front], s=46,
               facecolors="none", edgecolors="tab:red", lw=1.4, zorder=4)
    curve = uniform_curve(trials, cost)
    if curve:
        ax.plot([t.cost(cost) for t in curve], [t.error for t in curve], "o-",
                color="tab:blue", lw=1.4, ms=6, label="uniform r (paper's choice)", zorder=5)
        for t in curve:
            ax.annotate(f"r={t.uniform_r}", (t.cost(cost), t.error), textcoords="offset points",
                        xytext=(4, 5), fontsize=8, color="tab:blue")
    for t in trials:
        if t.is_plain:
            ax.scatter([t.cost(cost)], [t.error], marker="s", s=40, color="black",
                       label="no SE", zorder=5)
            break
    if model == PAPER_MODEL and cost == "params":
        paper = _paper_points()
        ax.plot([p[0] for p in paper], [p[1] for p in paper], "D--", color="tab:green",
                ms=5, lw=1, label="paper Table 10 (ImageNet)", zorder=5)
    ax.set_xlabel(label)
    ax.set_ylabel("validation top-1 error (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return fig
