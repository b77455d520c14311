"""Committed figures are drawn by the drawing code as it is now: a change to what a figure
shows must come with the figures it regenerates."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.figure_stamp import drawing_code, stale_figures, stamp_of  # noqa: E402
from analysis.figures import save_figure  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_every_committed_figure_is_drawn_by_the_current_code() -> None:
    figures = [p for p in RESULTS.rglob("*") if p.suffix in (".png", ".pdf")]
    assert len(figures) >= 20, f"expected the committed figures under {RESULTS}"
    stale = stale_figures(RESULTS)
    assert stale == [], "regenerate these with `senet figures` / `senet demo`:\n" + "\n".join(stale)


def test_a_figure_saved_without_the_stamp_is_reported_stale(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    stamped = save_figure(fig, tmp_path / "new" / "line")
    assert {p.suffix for p in stamped} == {".png", ".pdf"}
    assert all(stamp_of(p) == drawing_code() for p in stamped)
    fig.savefig(tmp_path / "old.png")  # drawn outside save_figure: no stamp
    plt.close(fig)
    stale = stale_figures(tmp_path)
    assert len(stale) == 1 and stale[0].startswith(str(tmp_path / "old.png"))
    assert "code from before stamps" in stale[0]
