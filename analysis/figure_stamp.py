"""Which code drew a figure: a hash of the drawing modules, written into every PNG and PDF
that save_figure makes, so a committed figure older than the code that draws it is found
(tests/test_figure_stamps.py) instead of shipped.

Only the modules that decide what a figure shows are hashed: a change to a table's
statistics or a verdict's wording leaves the figures as they are.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

DRAWING_MODULES = ("figures", "grid_figures", "excitation_select", "search_figure")
KEY = "senet-drawing-code"
_PDF_STAMP = re.compile(rb"senet-drawing-code=([0-9a-f]{16})")


def drawing_code() -> str:
    """16 hex digits of the SHA-256 of the drawing modules' source."""
    digest = hashlib.sha256()
    for name in DRAWING_MODULES:
        digest.update(resources.files("analysis").joinpath(f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


def png_metadata() -> dict[str, str]:
    return {KEY: drawing_code()}


def pdf_metadata() -> dict[str, str]:
    # A PDF's info dictionary has fixed keys; Keywords holds ours, uncompressed.
    return {"Keywords": f"{KEY}={drawing_code()}"}


def stamp_of(path: str | Path) -> str | None:
    """The drawing-code stamp a PNG or PDF carries, or None for one drawn before stamps."""
    path = Path(path)
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return image.info.get(KEY)
    match = _PDF_STAMP.search(path.read_bytes())
    return match.group(1).decode() if match else None


def stale_figures(root: str | Path) -> list[str]:
    """The PNG and PDF files under ``root`` not drawn by the drawing code as it is now,
    each with its stamp, as lines."""
    now = drawing_code()
    lines = []
    for path in sorted(Path(root).rglob("*")):
        if path.suffix not in (".png", ".pdf"):
            continue
        stamp = stamp_of(path)
        if stamp != now:
            lines.append(f"{path}: drawn by {stamp or 'code from before stamps'}, not {now}")
    return lines
