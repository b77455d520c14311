"""Fault drill: the reliability cases of issues 13 and 23, run as a user would, one row each.

    python benchmarks/fault_drill.py [--only SUBSTRING] [--markdown]

Every case runs the real `senet` CLI in a fresh temporary folder, with real MLflow and
queue stores, and checks what a user needs: the right exit code, one line of error that
names the input, nothing recorded wrong (no diverged run FINISHED, no run left RUNNING,
no duplicate tickets) and nothing lost. Cases about read-only files run as the user
`nobody` when the drill runs as root (root may write anywhere). Prints one row per case
and exits 1 if any case fails. Issue 23's cases (damaged and full storage, secrets, paths)
are in benchmarks/drill_issue23.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import drill_issue23 as issue23
from drill_kit import (  # benchmarks/ is on the path when run as a script
    PY,
    TINY,
    TINY_GRID,
    Case,
    Result,
    error_line,
    grid_file,
    one_line_error,
    runs,
    senet,
    spawn,
    statuses,
)

# ---------------------------------------------------------------------------
# The numbered cases of issue 13


def concurrent_first_use(tmp: Path) -> Result:
    procs = [spawn("train", "resnet20", *TINY, "--out", f"t{i}", cwd=tmp) for i in (1, 2)]
    codes = [p.wait(timeout=300) for p in procs]
    third = senet("train", "resnet20", *TINY, "--out", "t3", cwd=tmp)
    codes.append(third.returncode)
    st = statuses(tmp)
    ok = codes == [0, 0, 0] and st == ["FINISHED"] * 3
    return Result(ok, f"exit codes {codes}; runs {st}")


def diverged(lr: str) -> Callable[[Path], Result]:
    def check(tmp: Path) -> Result:
        proc = senet("train", "resnet20", *TINY, "--lr", lr, "--out", "run", cwd=tmp)
        st = statuses(tmp)
        summary = tmp / "run" / "summary.json"
        recorded = json.loads(summary.read_text()).get("status") if summary.exists() else None
        claims_ckpt = "checkpoint is kept" in proc.stderr and not (tmp / "run" /
                                                                   "checkpoint.pt").exists()
        ok = proc.returncode != 0 and "FINISHED" not in st and recorded != "FINISHED" \
            and not claims_ckpt
        return Result(ok, f"exit {proc.returncode}; runs {st}; summary {recorded}"
                          f"{'; claims a checkpoint that does not exist' if claims_ckpt else ''}")
    return check


def same_stem_grids(tmp: Path) -> Result:
    a = grid_file(tmp / "a" / "reduction.toml", TINY_GRID.format(title="A", reductions="[4]"))
    b = grid_file(tmp / "b" / "reduction.toml", TINY_GRID.format(title="B",
                                                                reductions="[8, 16]"))
    first = senet("queue", str(a), cwd=tmp)
    second = senet("queue", str(b), cwd=tmp)
    status = senet("status", "--json", cwd=tmp)
    grids = json.loads(status.stdout) if status.returncode == 0 else {}
    if second.returncode == 2 and error_line(second):
        return Result(first.returncode == 0 and len(grids) == 1,
                      f"second refused: {error_line(second)[:120]}")
    slots = sorted(g.get("total", g.get("slots", 0)) if isinstance(g, dict) else 0
                   for g in grids.values())
    ok = first.returncode == 0 and second.returncode == 0 and len(grids) == 2
    return Result(ok, f"{len(grids)} grid(s) in the queue: {sorted(grids)} {slots}")


def kill_before_checkpoint(tmp: Path) -> Result:
    args = ["train", "se_resnet20", "--epochs", "2", "--subset", "2000", "--batch-size", "50",
            "--device", "cpu", "--out", "run"]
    proc = spawn(*args, cwd=tmp)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "RUNNING" not in statuses(tmp):
        time.sleep(0.5)
    killed_before = not (tmp / "run" / "checkpoint.pt").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = senet(*args, "--resume", cwd=tmp)
    st = statuses(tmp)
    ok = again.returncode == 0 and "RUNNING" not in st and st.count("FINISHED") == 1 \
        and len(st) <= 2 and killed_before
    return Result(ok, f"killed before checkpoint: {killed_before}; resume exit "
                      f"{again.returncode}; runs {st}")


def resume_finished(tmp: Path) -> Result:
    first = senet("train", "resnet20", *TINY, "--out", "run", cwd=tmp)
    again = senet("train", "resnet20", *TINY, "--out", "run", "--resume", cwd=tmp)
    from mlflow import MlflowClient

    rs = runs(tmp)
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    logged = len(client.get_metric_history(rs[0].info.run_id, "final_val_top1_err")) if rs else 0
    said = " ".join((again.stdout + again.stderr).split())
    ok = first.returncode == 0 and again.returncode == 0 and logged == 1 and len(rs) == 1 \
        and "finished" in said.lower()
    return Result(ok, f"resume exit {again.returncode}; final_val_top1_err logged {logged}x; "
                      f"{len(rs)} run(s); said: {said[-100:]}")


def resume_changed(tmp: Path) -> Result:
    args = ["train", "resnet20", "--subset", "200", "--batch-size", "50", "--device", "cpu",
            "--out", "run"]
    first = senet(*args, "--epochs", "1", cwd=tmp)
    again = senet(*args, "--epochs", "3", "--resume", cwd=tmp)
    res = one_line_error("epochs")(again)
    return Result(first.returncode == 0 and res.passed, res.happened)


def concurrent_queue(storage: str) -> Callable[[Path], Result]:
    def check(tmp: Path) -> Result:
        grid = grid_file(tmp / "g.toml", TINY_GRID.format(title="G", reductions="[2, 4, 8, 16]"))
        grid.write_text(grid.read_text().replace("seeds = [0]", "seeds = [0, 1, 2, 3]"))
        store = storage.format(tmp=tmp)
        procs = [spawn("queue", str(grid), "--storage", store, cwd=tmp) for _ in range(4)]
        codes = [p.wait(timeout=300) for p in procs]
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
        exps = [e for e in client.search_experiments() if e.name != "Default"]
        parents = client.search_runs([e.experiment_id for e in exps],
                                     "tags.`senet.role` = 'grid'") if exps else []
        status = senet("status", "--json", "--storage", store, cwd=tmp)
        report = json.loads(status.stdout) if status.returncode == 0 else {}
        tickets = _ticket_count(store)
        ok = codes == [0] * 4 and len(exps) == 1 and len(parents) == 1 and tickets == 16
        return Result(ok, f"exit codes {codes}; {len(exps)} experiment(s), {len(parents)} parent "
                          f"run(s), {tickets} tickets for 16 slots; status grids {len(report)}")
    return check


def _ticket_count(store: str) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "://" not in store:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(store))
    else:
        storage = optuna.storages.RDBStorage(store)
    return sum(len(storage.get_all_trials(storage.get_study_id_from_name(s.study_name)))
               for s in storage.get_all_studies())


def status_keeps_live_work(tmp: Path) -> Result:
    grid = grid_file(tmp / "g.toml", TINY_GRID.format(title="G", reductions="[4]"))
    grid.write_text(grid.read_text().replace("subset = 200", "subset = 2000")
                    .replace("epochs = 1", "epochs = 3"))
    senet("queue", str(grid), cwd=tmp)
    worker = spawn("work", str(grid), "--devices", "cpu", "--heartbeat", "15", "--grace", "60",
                   cwd=tmp)
    time.sleep(12)  # claimed; its last heartbeat is now several seconds old
    status = senet("status", "--json", cwd=tmp, env={"SENET_HEARTBEAT_GRACE_S": "3"})
    worker.wait(timeout=300)
    report = json.loads(status.stdout) if status.returncode == 0 else {}
    grid_report = next(iter(report.values()), {})
    running = grid_report.get("running")
    out = worker.stdout.read() if worker.stdout else ""
    lost = "took back" in out or "given to another worker" in out
    ok = running == 1 and not lost and worker.returncode == 0
    return Result(ok, f"status (its own grace 3 s) saw running={running}; worker lost its "
                      f"ticket: {lost}; worker exit {worker.returncode}")


def edited_grid(tmp: Path) -> Result:
    grid = grid_file(tmp / "g.toml", TINY_GRID.format(title="G", reductions="[4, 8, 16]"))
    senet("queue", str(grid), cwd=tmp)
    grid.write_text(grid.read_text().replace("[4, 8, 16]", "[4, 8]"))
    again = senet("queue", str(grid), cwd=tmp)
    status = senet("status", "--json", cwd=tmp)
    report = json.loads(status.stdout) if status.returncode == 0 else {}
    g = next(iter(report.values()), {})
    said = " ".join(again.stdout.split())
    queued = g.get("queued")
    ok = again.returncode == 0 and "drop" in said.lower() and queued == 2
    return Result(ok, f"re-queue said: {said[:110]}; queued now {queued}")


# ---------------------------------------------------------------------------
# One line, not a traceback


def cli_case(args: list[str], *words: str, nobody: bool = False, seconds: float = 60,
             setup: Callable[[Path], None] | None = None) -> Callable[[Path], Result]:
    def check(tmp: Path) -> Result:
        if setup:
            setup(tmp)
        if nobody:
            os.chmod(tmp, 0o777)
        t0 = time.monotonic()
        proc = senet(*args, cwd=tmp, nobody=nobody)
        took = time.monotonic() - t0
        res = one_line_error(*words)(proc)
        slow = took > seconds
        return Result(res.passed and not slow,
                      res.happened + (f" (after {took:.0f} s)" if slow or took > 10 else ""))
    return check


def _readonly_out(tmp: Path) -> None:
    (tmp / "locked").mkdir()
    os.chmod(tmp / "locked", 0o555)


def _other_checkpoint(tmp: Path) -> None:
    senet("train", "resnet20", *TINY, "--out", "run", cwd=tmp)
    (tmp / "run" / "summary.json").unlink()  # make it look unfinished


def _readonly_db(tmp: Path) -> None:
    senet("train", "resnet20", *TINY, "--out", "first", cwd=tmp)
    os.chmod(tmp / "mlflow.db", 0o444)


def _unwritable_folder(tmp: Path) -> None:
    (tmp / "sealed").mkdir()
    os.chmod(tmp / "sealed", 0o555)


def _one_class_folder(tmp: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("val", 5)):
        folder = tmp / "one" / split / "cat"
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                folder / f"{i}.png")


def _grid_setup(body: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        grid_file(tmp / "g.toml", body)
    return setup


def server_dies(tmp: Path) -> Result:
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp, port)
    try:
        args = ["train", "se_resnet20", "--epochs", "3", "--subset", "3000", "--batch-size",
                "50", "--device", "cpu", "--out", "run", "--tracking-uri", uri]
        started = time.monotonic()
        proc = spawn(*args, cwd=tmp)
        deadline = started + 300
        while time.monotonic() < deadline and not (tmp / "run" / "checkpoint.pt").exists():
            time.sleep(0.5)
        first_epoch = time.monotonic() - started  # start-up and one epoch: an upper bound
        _kill_server(server)
        t0 = time.monotonic()
        err = proc.communicate(timeout=600)[1]
        took = time.monotonic() - t0
        done = subprocess.CompletedProcess(args, proc.returncode, "", err)
        res = one_line_error("tracking")(done)
        tracebacks = err.count("Traceback")
        # Nothing before the error either (MLflow's system-metrics monitor warned on its own
        # with a 400-character line when the store went).
        stderr_lines = len([line for line in err.splitlines() if line.strip()])
        # The training talks to the store when an epoch ends: the line comes then, not after
        # minutes of retries. Allowed: the epoch in flight plus 30 s.
        in_time = took < first_epoch + 30
        # The store's reason is whole or shortened between words (" … "), never cut at a
        # fixed length mid-word ("log-batc", issue 23).
        found = re.search(r"\): (.*); the checkpoint of the last", error_line(done) or "")
        reason = found.group(1) if found else ""
        whole = bool(found) and (" … " in reason or len(reason) < 200)
        first = (f"{res.happened[:50]} … {reason[-60:]}; reason whole: {whole}; {tracebacks} "
                 f"tracebacks; exit {took:.0f} s after the kill (an epoch took ≤ "
                 f"{first_epoch:.0f} s); {stderr_lines} stderr line(s)")
        server = _start_server(tmp, port)
        try:
            again = senet(*args, "--resume", cwd=tmp, timeout=600).returncode
        except subprocess.TimeoutExpired:
            again = "none (still training after 600 s)"
        st = statuses(tmp, "server.db")
        ok = res.passed and whole and not tracebacks and stderr_lines == 1 and in_time \
            and again == 0 and st == ["FINISHED"]
        return Result(ok, f"{first}; resume exit {again}; runs {st}")
    finally:
        _kill_server(server)


def _kill_server(server: subprocess.Popen) -> None:
    """SIGKILL the whole server: `mlflow server` serves from a uvicorn child process, which
    outlives a SIGKILL of the parent alone and keeps answering on the port."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(tmp: Path, port: int) -> subprocess.Popen:
    bin_dir = Path(PY).parent
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
         "--default-artifact-root", str(tmp / "artifacts"), "--workers", "1"],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner
        start_new_session=True)  # its own process group: see _kill_server
    import urllib.request

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("mlflow server did not start")


CASES = [
    Case("1 two `senet train` at once on a new SQLite store", "both and a third FINISHED",
         concurrent_first_use),
    Case("2 `--lr nan`", "run FAILED, not FINISHED", diverged("nan")),
    Case("2 `--lr 1e6`, short epochs", "run FAILED, not FINISHED", diverged("1e6")),
    Case("3 two grids named reduction.toml", "two grids, or a one-line refusal",
         same_stem_grids),
    Case("4 SIGKILL before the first checkpoint, then --resume",
         "one run FINISHED, none RUNNING", kill_before_checkpoint),
    Case("4 --resume of a finished run", "says so; final metrics logged once",
         resume_finished),
    Case("4 --resume --epochs 3 of a 1-epoch run", "one line naming epochs", resume_changed),
    Case("5 four `senet queue` of one new grid (journal)",
         "1 experiment, 1 parent run, 16 tickets", concurrent_queue("{tmp}/q.journal")),
    Case("5 four `senet queue` of one new grid (SQLite)",
         "1 experiment, 1 parent run, 16 tickets", concurrent_queue("sqlite:///{tmp}/q.db")),
    Case("6 `senet status` with a shorter grace than the worker's",
         "the live ticket stays running", status_keeps_live_work),
    Case("7 a point removed from a queued grid", "re-queue names the drop; 2 left",
         edited_grid),
    Case("`--lr -1`", "one line naming lr", cli_case(["train", "resnet20", *TINY, "--lr", "-1"],
                                                     "lr")),
    Case("read-only `--out`", "one line naming the folder",
         cli_case(["train", "resnet20", *TINY, "--out", "locked/run"], "locked", nobody=True,
                  setup=_readonly_out)),
    Case("`--resume` with another model's checkpoint", "one line naming the checkpoint",
         cli_case(["train", "se_resnet20", *TINY, "--out", "run", "--resume"], "checkpoint",
                  setup=_other_checkpoint)),
    Case("read-only SQLite file", "one line naming readonly",
         cli_case(["train", "resnet20", *TINY, "--out", "second"], "readonly", nobody=True,
                  setup=_readonly_db)),
    Case("new SQLite file in an unwritable folder", "one line within seconds",
         cli_case(["train", "resnet20", *TINY, "--tracking-uri", "sqlite:///sealed/m.db"],
                  "sealed", nobody=True, seconds=15, setup=_unwritable_folder)),
    Case("`--epochs 0`", "one line naming epochs",
         cli_case(["train", "resnet20", "--epochs", "0", "--subset", "200", "--device", "cpu"],
                  "epochs")),
    Case("`--batch-size 0`", "one line naming batch",
         cli_case(["train", "resnet20", "--batch-size", "0", "--subset", "200", "--device",
                   "cpu"], "batch")),
    Case("`--set num_classes=3` on the built-in data", "one line naming num_classes",
         cli_case(["train", "resnet20", *TINY, "--set", "num_classes=3"], "num_classes")),
    Case("a folder dataset with one class", "one line: two classes needed",
         cli_case(["train", "resnet20", *TINY, "--dataset", "folder:one"], "class",
                  setup=_one_class_folder)),
    Case("`--preset /nope/x.toml`", "one line: the file does not exist",
         cli_case(["train", "resnet20", *TINY, "--preset", "/nope/x.toml"], "/nope/x.toml",
                  "exist")),
    Case("grid `reduction = [4, 4]` in [axes]", "one line blaming axes",
         cli_case(["queue", "g.toml"], "axes", setup=_grid_setup(
             TINY_GRID.format(title="G", reductions="[4, 4]")))),
    Case("grid `reduction = [true]`", "refused when queued",
         cli_case(["queue", "g.toml"], "reduction", setup=_grid_setup(
             TINY_GRID.format(title="G", reductions="[true]")))),
    Case("grid `lr = 1e400`", "refused when queued",
         cli_case(["queue", "g.toml"], "lr", setup=_grid_setup(
             TINY_GRID.format(title="G", reductions="[4]") + "lr = 1e400\n"))),
    Case("the MLflow server dies mid-run",
         "one line (whole, not cut mid-word, nothing else on stderr) when the epoch in flight "
         "ends, no retries; --resume finishes the run", server_dies),
    *issue23.CASES,
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or args.only.lower() in c.name.lower()]
    rows = []
    for case in cases:
        tmp = Path(tempfile.mkdtemp(prefix="senet-drill-"))
        t0 = time.monotonic()
        try:
            result = case.check(tmp)
        except Exception as exc:  # noqa: BLE001 - a crashing case is a failed case
            result = Result(False, f"drill error: {type(exc).__name__}: {exc}"[:160])
        finally:
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
        rows.append((case, result, time.monotonic() - t0))
        mark = "pass" if result.passed else "FAIL"
        print(f"{mark}  {case.name}  ({time.monotonic() - t0:.0f} s): {result.happened}",
              file=sys.stderr, flush=True)
    if args.markdown:
        print("| case | expected | what happened | result |")
        print("|---|---|---|---|")
        for case, result, _ in rows:
            happened = result.happened.replace("|", "\\|")
            print(f"| {case.name} | {case.expect} | {happened} | "
                  f"{'pass' if result.passed else '**FAIL**'} |")
    failed = sum(not r.passed for _, r, _ in rows)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
