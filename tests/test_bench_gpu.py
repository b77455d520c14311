"""benchmarks/bench_gpu.py runs on CPU in quick mode and prints its one table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_quick_on_cpu_prints_one_table(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_GPU_JSON": str(out)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu",
         "--quick", "--models", "resnet20,se_resnet20"],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| model | batch x size | path | img/s | SE cost")
    body = lines[1:]  # the separator row starts "|---"
    assert [ln.split(" | ")[:3] for ln in body] == [
        ["| resnet20", "8x32", "eager"], ["| resnet20", "8x32", "packed"],
        ["| se_resnet20", "8x32", "eager"], ["| se_resnet20", "8x32", "packed"]]
    import json

    rows = json.loads(out.read_text())
    assert all(r["img_s"] and r["img_s"] > 0 for r in rows)
    assert body[2].split(" | ")[4].endswith("x")  # the SE cost on the eager path
