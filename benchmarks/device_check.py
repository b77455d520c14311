"""One command that checks every GPU path and writes one markdown report.

    python benchmarks/device_check.py                  # on a GPU machine (<= 6 min on an H200)
    python benchmarks/device_check.py --cpu            # the same steps at tiny sizes (CI)

Steps, each a separate process with its own time cap, so one that hangs or crashes the
interpreter is reported and the others still run:

1. every CUDA test of the suite (the test files that skip without CUDA), in one pytest
   process, so that a test that crashes the interpreter after another is found;
2. ``senet queue`` + ``senet work`` with the defaults on a small real grid: SE-ResNet-110,
   4 seeds, on the CIFAR-10 JPEGs (``--data``; built-in data with ``--cpu``);
3. the same grid with ``--pack`` and ``--per-gpu`` given explicitly, both ways;
4. ``senet train`` on an ImageNet-layout folder, streaming (GPU JPEG decode on CUDA), for
   a few hundred steps;
5. the headline rows of ``benchmarks/bench_gpu.py``: eager, CUDA graphs, packed seeds,
   compiled, a packed grid of points, and the fused SE paths;
6. the ImageNet loader's rate (``benchmarks/bench_data.py``).

The report (``--report``, default ``results/gpu/device-check-<device>.md``) has one row per
step: passed or failed, seconds, the numbers it measured, and the tail of the output of a
step that failed. The exit code is 1 if any step failed.

On the `device` tool's GPU machine (no mlflow or optuna there), carry the wheels and the
data as ``shared/gpu/README.md`` says, then in one call:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \\
        .device/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD &&
    mkdir -p /tmp/d && tar xzf .device/cifar10-jpeg.tar.gz -C /tmp/d &&
    tar xzf .device/imagenet-sample.tar.gz -C /tmp/d &&
    python3 benchmarks/device_check.py --data /tmp/d --report $OUT/device-check.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Step:
    name: str
    ok: bool = False
    seconds: float = 0.0
    numbers: dict[str, str] = field(default_factory=dict)
    tail: str = ""


DEADLINE = [float("inf")]  # the whole check's end (monotonic seconds), set by main()


def run(cmd: list[str], cap: float, cwd: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``cmd`` with a time cap, never past the check's deadline; (exit code, output,
    seconds). 124 means the cap ran out."""
    t0 = time.monotonic()
    cap = min(cap, DEADLINE[0] - t0)
    if cap < 5:
        return 124, "(no time left in the check's budget)", 0.0
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=cap)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        code, out = 124, out + f"\n(time cap of {cap:.0f} s reached)"
    return code, out, time.monotonic() - t0


def senet(*args: str) -> list[str]:
    return [sys.executable, "-m", "senet", *args]


def cuda_test_files() -> list[str]:
    """The suite's test files that hold tests which run only with CUDA."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "cuda.is_available()" in p.read_text())


def tiny_folder(folder: Path) -> Path:
    """A CIFAR-like class-per-folder tree of 48 made-up 32x32 JPEGs, for --cpu."""
    from PIL import Image

    tree = folder / "tiny"
    for split, n in (("train", 16), ("test", 4)):
        for c in range(2):
            d = tree / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (120 * c + 3 * i, 80, 200 - 90 * c)).save(
                    d / f"{i}.jpg")
    return tree


def write_grid(folder: Path, name: str, dataset: str, cpu: bool) -> Path:
    model, epochs, subset, batch = ("se_resnet20", 1, 32, 8) if cpu else \
        ("se_resnet110", 2, 20000, 128)
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ntitle = "device check: {model}, 4 seeds"\n'
        f'model = "{model}"\npreset = "{"fast" if cpu else "cifar-preact"}"\n'
        f'dataset = "{dataset}"\nepochs = {epochs}\nsubset = {subset}\n'
        f'batch_size = {batch}\nworkers = 0\nseeds = [0, 1, 2, 3]\n'
        '[[variants]]\nlabel = "SE"\n')
    return path


def grid_numbers(tracking_uri: str, experiment: str, wall: float) -> dict[str, str]:
    """From the store: runs finished, their pack sizes and paths, and the GPU's img/s."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {"runs": "0"}
    runs = [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("senet.role") != "grid"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    images = 0.0
    rates = 0.0
    for r in finished:
        epochs = int(r.data.params.get("epochs", 1))
        subset = int(r.data.params.get("subset") or 0)
        images += epochs * subset
        rates += r.data.metrics.get("img_per_s", 0.0)
    return {
        "runs finished": f"{len(finished)}/{len(runs)}",
        "pack sizes": ",".join(sorted({r.data.params.get("pack_size", "?") for r in runs})),
        "step paths": ",".join(sorted({r.data.params.get("step_path", "?") for r in runs})),
        "img/s, sum of the runs' last epochs": f"{rates:,.0f}",
        "img/s, end to end (images / wall)": f"{images / max(wall, 1e-9):,.0f}",
    }


def grid_step(name: str, extra: list[str], folder: Path, dataset: str, cpu: bool,
              env: dict[str, str], cap: float) -> Step:
    step = Step(name)
    grid = write_grid(folder, name.replace(" ", "-"), dataset, cpu)
    storage = str(folder / f"{grid.stem}.journal")
    uri = f"sqlite:///{folder}/{grid.stem}.db"
    code, out, secs = run(senet("queue", str(grid), "--storage", storage,
                                "--tracking-uri", uri), cap, ROOT, env)
    if code == 0:
        code, out2, secs2 = run(senet("work", "--storage", storage, "--runs-dir",
                                      str(folder / f"runs-{grid.stem}"), *extra),
                                cap, ROOT, env)
        out, secs = out + out2, secs + secs2
        step.numbers = grid_numbers(uri, grid.stem, secs2)
        step.numbers["chosen"] = next((line.split("senet work: ", 1)[1] for line in
                                       out2.splitlines() if "worker(s) per GPU" in line),
                                      "no share line (CPU)")
    step.ok = code == 0 and step.numbers.get("runs finished", "").startswith("4/")
    step.seconds = secs
    step.tail = "" if step.ok else out[-1500:]
    return step


def imagenet_tree(folder: Path, data: Path | None, cpu: bool) -> Path:
    """An ImageNet-layout tree (train/ and val/, one folder per class): the 100 sample
    JPEGs, each linked 20 times into train/; tiny made-up JPEGs with --cpu."""
    tree = folder / "imagenet"
    if cpu or data is None or not (data / "imagenet-sample" / "val").is_dir():
        from PIL import Image

        for split, n in (("train", 4), ("val", 2)):
            for c in range(2):
                d = tree / split / f"n0000000{c}"
                d.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    Image.new("RGB", (80, 64), (40 * c + i, 90, 200 - 30 * c)).save(
                        d / f"img{i}.JPEG")
        return tree
    for wnid in (data / "imagenet-sample" / "val").iterdir():
        for split, copies in (("train", 20), ("val", 1)):
            d = tree / split / wnid.name
            d.mkdir(parents=True, exist_ok=True)
            for img in wnid.iterdir():
                for i in range(copies):
                    (d / f"{i}_{img.name}").symlink_to(img.resolve())
    return tree


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (the suite's run)")
    ap.add_argument("--data", type=Path, help="folder with cifar10-jpeg/ and imagenet-sample/")
    ap.add_argument("--report", type=Path, help="markdown report (default results/gpu/...)")
    ap.add_argument("--only", help="comma list of step numbers to run (default: all)")
    ap.add_argument("--budget", type=float, help="seconds for the whole check (default 345 on "
                    "a GPU, so it ends within 6 minutes with its set-up; 900 with --cpu)")
    args = ap.parse_args()
    DEADLINE[0] = time.monotonic() + (args.budget or (900 if args.cpu else 345))
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("device_check: no CUDA GPU here; run it with --cpu for the tiny CPU version",
              file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else torch.cuda.get_device_name(0)
    report = args.report or ROOT / "results" / "gpu" / \
        f"device-check-{device.replace(' ', '-')}.md"
    only = set(args.only.split(",")) if args.only else None
    folder = Path(tempfile.mkdtemp(prefix="senet-device-check-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "SENET_SYSTEM_METRICS": "0", "SENET_CACHE": str(folder / "cache")}
    cap = 120.0 if args.cpu else 100.0
    cifar = args.data / "cifar10-jpeg" if args.data else None
    if args.cpu or cifar is None or not cifar.is_dir():
        dataset = f"folder:{tiny_folder(folder)}"
    else:
        dataset = f"folder:{cifar}"
    devices = ["--devices", "cpu"] if args.cpu else []
    steps: list[Step] = []

    def wanted(n: int) -> bool:
        return only is None or str(n) in only

    if wanted(1):
        if args.cpu:
            steps.append(Step("1 CUDA tests", True, 0.0, {"skipped": "--cpu (the suite runs "
                                                            "them, and they skip without CUDA)"}))
        else:
            files = cuda_test_files()
            code, out, secs = run([sys.executable, "-X", "faulthandler", "-m", "pytest", "-q",
                                   "-n0", "-rs", *files], 150, ROOT, env)
            last = out.strip().splitlines()[-1] if out.strip() else ""
            steps.append(Step("1 CUDA tests", code == 0, secs,
                              {"files": str(len(files)), "result": last},
                              "" if code == 0 else out[-2500:]))
    if wanted(2):
        steps.append(grid_step("2 work defaults", devices, folder, dataset, args.cpu, env, cap))
    if wanted(3):
        # On a CPU `--pack 1` is the default of step 2, and there is no --per-gpu.
        variants = [["--pack", "4"]] if args.cpu else [["--pack", "4", "--per-gpu", "1"],
                                                       ["--pack", "1", "--per-gpu", "4"]]
        for flags in variants:
            steps.append(grid_step(f"3 work {' '.join(flags)}", devices + flags, folder,
                                   dataset, args.cpu, env, cap))
    if wanted(4):
        tree = imagenet_tree(folder, args.data, args.cpu)
        model, batch, epochs = ("se_resnet50", 2, 1) if args.cpu else ("se_resnet50", 128, 13)
        code, out, secs = run(senet(
            "train", model, "--dataset", "imagenet", "--data-root", str(tree), "--preset",
            "imagenet-ablation", "--epochs", str(epochs), "--batch-size", str(batch),
            "--workers", "0" if args.cpu else "12", "--out", str(folder / "imagenet-run"),
            "--tracking-uri", f"sqlite:///{folder}/imagenet.db",
            *(["--device", "cpu"] if args.cpu else [])), 120 if args.cpu else 150, ROOT, env)
        summary = out.strip().splitlines()[-1] if code == 0 else ""
        numbers = {"epoch lines": str(sum("epoch " in line and "img/s" in line
                                          for line in out.splitlines()))}
        compile_line = next((line for line in out.splitlines() if "torch.compile" in line), "")
        if compile_line:
            numbers["compile"] = compile_line.split("torch.compile: ", 1)[-1][:90]
        if summary.startswith("{"):
            numbers["final top-1 err"] = f"{json.loads(summary)['final_val_top1_err']:.2f}"
        steps.append(Step("4 train imagenet-layout, streaming", code == 0, secs, numbers,
                          "" if code == 0 else out[-1500:]))
    if wanted(5):
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")]
        cmd += ["--device", "cpu", "--quick", "--models", "resnet20,se_resnet20",
                "--paths", "eager,packed,packed-grid"] if args.cpu else [
            "--models", "resnet110,se_resnet110,resnet50,se_resnet50", "--no-timm",
            "--paths", "eager,graphs,packed,compiled,packed-grid,fused-se,fused-block"]
        code, out, secs = run(cmd, 120 if args.cpu else 150, ROOT, env)
        table = [line for line in out.splitlines() if line.startswith("|")]
        steps.append(Step("5 bench_gpu headline rows", code == 0 and bool(table), secs,
                          {"rows": str(max(0, len(table) - 2))},
                          "\n".join(table) if code == 0 else out[-1500:]))
    if wanted(6):
        tree = imagenet_tree(folder, args.data, args.cpu) if not (folder / "imagenet").exists() \
            else folder / "imagenet"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_data.py"), "--dataset",
               "imagenet", "--data-root", str(tree), "--batch-size", "4" if args.cpu else "256",
               "--seconds", "2" if args.cpu else "20", "--repeats", "2" if args.cpu else "3",
               "--workers", "0" if args.cpu else "12"]
        code, out, secs = run(cmd, 60 if args.cpu else 90, ROOT, env)
        rows = [line for line in out.splitlines() if line.startswith("|")]
        steps.append(Step("6 ImageNet loader rate", code == 0, secs,
                          {"rows": str(max(0, len(rows) - 2))},
                          "\n".join(rows) if code == 0 else out[-1500:]))

    write_report(report, device, steps)
    shutil.rmtree(folder, ignore_errors=True)
    failed = [s.name for s in steps if not s.ok]
    print(f"device_check: {len(steps) - len(failed)} of {len(steps)} steps passed"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}; report {report}")
    return 1 if failed else 0


def write_report(path: Path, device: str, steps: list[Step]) -> None:
    import torch

    lines = [f"# Device check on {device}", "",
             f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             "`python benchmarks/device_check.py" + (" --cpu`" if device == "cpu" else "`"), "",
             "| step | result | seconds | numbers |", "|---|---|---|---|"]
    for s in steps:
        numbers = "; ".join(f"{k}: {v}" for k, v in s.numbers.items())
        lines.append(f"| {s.name} | {'passed' if s.ok else '**FAILED**'} | {s.seconds:.0f} | "
                     f"{numbers} |")
    for s in steps:
        if s.tail:
            lines += ["", f"## {s.name}", "", "```", s.tail.strip(), "```"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
