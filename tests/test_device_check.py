"""The device check stays runnable: its --cpu run (tiny sizes, every step but the CUDA
tests, which the suite itself runs) passes and writes its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_device_check_runs_on_the_cpu_and_reports_every_step(tmp_path):
    report = tmp_path / "check.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"),
                           "--cpu", "--report", str(report)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = report.read_text().splitlines()
    start = lines.index("| step | result | seconds | numbers |") + 2
    rows = []
    for line in lines[start:]:  # the summary table ends at its first blank line
        if not line.startswith("| "):
            break
        rows.append(line)
    assert [r.split(" | ")[0].lstrip("| ").split(" ")[0] for r in rows] == [
        "1", "2", "3", "4", "5", "6"]
    assert all(" passed " in r for r in rows), rows
    work = next(r for r in rows if "work defaults" in r)
    assert "runs finished: 4/4" in work
    packed = next(r for r in rows if "--pack 4" in r)
    assert "pack sizes: 4" in packed
