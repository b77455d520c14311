"""benchmarks/bench_gpu.py runs on CPU in quick mode and prints its one table."""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import warm_procs

ROOT = Path(__file__).resolve().parents[1]


def _run_script(argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    """A child's main: `python ARGV` as the interpreter runs a script (as __main__, with
    that argv), stdout and stderr going to files at the file-descriptor level."""
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")
    sys.stdout.flush()
    sys.stderr.flush()


def test_bench_gpu_quick_on_cpu_prints_one_table(tmp_path):
    out = tmp_path / "rows.json"
    stdout, stderr = tmp_path / "bench.out", tmp_path / "bench.err"
    # Its own process, forked from the warm server (tests/warm_procs.py) instead of a new
    # interpreter that imports torch again: the script sets the process's thread count.
    proc = warm_procs.context().Process(target=_run_script, args=(
        [str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--quick",
         "--models", "resnet20,se_resnet20"],
        {"BENCH_GPU_JSON": str(out)}, str(stdout), str(stderr)))
    proc.start()
    proc.join(300)
    if proc.is_alive():
        proc.kill()
        proc.join(10)
    assert proc.exitcode == 0, stderr.read_text()[-2000:]
    lines = [ln for ln in stdout.read_text().splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| model | batch x size | path | img/s | SE cost")
    body = [ln.split(" | ") for ln in lines[1:]]  # the separator row starts "|---"
    paths = ["eager", "packed", "packed-grid", "fused-se"]
    stages = ["read", "decode-pil", "decode-batch", "resize-each", "resize-batch",
              "loader-pil", "loader-device"]
    assert [r[:3] for r in body] == [
        *(["| resnet20", "8x32", p] for p in paths),
        *(["| se_resnet20", "8x32", p] for p in paths),
        *(["| input", "8x224", s] for s in stages)]
    assert body[4][4].endswith("x")  # the SE cost on the eager path
    assert body[6][6] == "K=2 points, eager |"  # the SE model packs different points
    # The fused path needs CUDA: its rows start, and say why they did not run.
    assert body[3][3] == "-" and body[3][6].startswith("skipped: needs CUDA")

    rows = json.loads(out.read_text())
    ran = [r for r in rows if not r["note"].startswith("skipped")]
    assert len(ran) == len(rows) - 2 and all(r["img_s"] and r["img_s"] > 0 for r in ran)
