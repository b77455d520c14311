"""Fault-drill cases of issue 23, sections 2-5: damaged or full storage, secrets, paths,
and what was found along the way. Each case counts what it reports from the stores
(the queue storage, the MLflow store, the files under the case's folder).

Cases that need a PostgreSQL server start their own (benchmarks/drill_postgres.py), so
stopping it under a worker touches no one else's server; without Debian's postgresql
binaries they fail and say so. The full-disk case mounts a 2 MB tmpfs: it needs root.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from drill_kit import PY, TINY, TINY_GRID, Case, Result, error_line, grid_file, runs, senet, spawn
from drill_postgres import PASSWORD, PrivatePostgres

from senet.errors import shorten

JOURNAL = "senet-queue.journal"
EPOCH_METRIC = "val_top1_err"
# 300 training and 50 validation images of the built-in data: these cases count records,
# and run many commands each (on 2 busy cores a command takes tens of seconds).
SMALL = {"SENET_BUILTIN_PER_CLASS": "30,5"}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess:
    return senet(*args, cwd=cwd, env={**SMALL, **(env or {})}, timeout=timeout)


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return spawn(*args, cwd=cwd, env={**SMALL, **(env or {})})


# ---------------------------------------------------------------------------
# Counting what the stores hold


def _client(tmp: Path, uri: str | None = None):
    from senet.tracking.store import open_client
    from senet.urls import with_driver

    return open_client(with_driver(uri) if uri else f"sqlite:///{tmp / 'mlflow.db'}")


def _training_runs(client) -> list:
    exps = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(exps, "") if r.data.tags.get("senet.role") != "grid"]


def _ledger(client) -> dict[str, int]:
    """What a user's table rests on: FINISHED runs, keys with more than one FINISHED run,
    runs with a step logged twice, runs still RUNNING, FINISHED runs with a stale reason."""
    rs = _training_runs(client)
    finished: dict[str, int] = {}
    twice = stale = 0
    for r in rs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, EPOCH_METRIC)]
        twice += len(steps) != len(set(steps))
        if r.info.status == "FINISHED":
            key = r.data.tags.get("senet.key", r.info.run_id)
            finished[key] = finished.get(key, 0) + 1
            stale += any(t in r.data.tags for t in ("senet.fail_reason", "senet.stop_reason"))
    return {"runs": len(rs), "finished": sum(finished.values()),
            "keys_twice": sum(n > 1 for n in finished.values()), "steps_twice": twice,
            "running": sum(r.info.status == "RUNNING" for r in rs), "stale_reason": stale}


def _clean(ledger: dict[str, int], finished: int) -> bool:
    return (ledger["finished"] == finished and ledger["keys_twice"] == 0
            and ledger["steps_twice"] == 0 and ledger["running"] == 0
            and ledger["stale_reason"] == 0)


def _ledger_text(ledger: dict[str, int]) -> str:
    return (f"MLflow: {ledger['finished']} FINISHED of {ledger['runs']} runs, "
            f"{ledger['keys_twice']} keys twice, {ledger['steps_twice']} runs with a step "
            f"twice, {ledger['running']} RUNNING, {ledger['stale_reason']} stale reasons")


def _status(tmp: Path, *extra: str) -> dict:
    proc = cli("status", "--json", *extra, cwd=tmp)
    report = json.loads(proc.stdout) if proc.returncode == 0 else {}
    return next(iter(report.values()), {})


def _tracebacks(*procs: subprocess.CompletedProcess) -> int:
    return sum((p.stdout + p.stderr).count("Traceback") for p in procs)


def _grid(tmp: Path, reductions: str = "[2, 4, 8]", **replace: str) -> Path:
    body = TINY_GRID.format(title="G", reductions=reductions)
    for old, new in replace.items():
        body = body.replace(old, new)
    return grid_file(tmp / "g.toml", body)


# ---------------------------------------------------------------------------
# 2. A damaged journal


def _cut_mid_line(path: Path, fraction: float) -> int:
    """Truncate ``path`` inside the line found at ``fraction`` of the file; returns the
    number of whole lines left."""
    data = path.read_bytes()
    ends = [i for i, b in enumerate(data) if b == ord("\n")]
    line = max(1, int(len(ends) * fraction))
    start = ends[line - 1] + 1
    cut = start + (ends[line] - start) // 2
    path.write_bytes(data[:cut])
    return line


def _every_command(tmp: Path, grid: Path) -> dict[str, subprocess.CompletedProcess]:
    return {name: cli(*args, cwd=tmp) for name, args in (
        ("status", ["status"]), ("queue", ["queue", str(grid)]), ("plan", ["plan", str(grid)]),
        ("work", ["work", "--devices", "cpu"]))}


def journal_torn(tmp: Path) -> Result:
    """Cut mid-record (a crash or a full disk mid-append): the torn record is removed by
    the first command, said in one line; every command works; the lost result is redone
    from MLflow, not trained again."""
    grid = _grid(tmp)
    cli("queue", str(grid), cwd=tmp)
    first = cli("work", "--devices", "cpu", "--max-runs", "1", cwd=tmp)
    _cut_mid_line(tmp / JOURNAL, 0.9)
    procs = _every_command(tmp, grid)
    codes = {name: p.returncode for name, p in procs.items()}
    said = sum("was cut short" in p.stderr for p in procs.values())
    reused = procs["work"].stdout.count("already finished")
    done = _status(tmp).get("done")
    ledger = _ledger(_client(tmp))
    ok = (first.returncode == 0 and set(codes.values()) == {0} and said == 1 and done == 3
          and _clean(ledger, 3) and not _tracebacks(*procs.values()))
    return Result(ok, f"exit codes {codes}; {said} line said the torn record was removed; "
                      f"{_tracebacks(*procs.values())} tracebacks; queue done {done}/3 "
                      f"({reused} redone from a FINISHED run); {_ledger_text(ledger)}")


def journal_cut_under_worker(tmp: Path) -> Result:
    """The issue's cut: mid-line, while a worker trains. The worker stops in one line
    before it writes again; following it (queue the grid again, which repairs the tail and
    re-adds the tickets the cut took) the next worker finishes the grid."""
    grid = _grid(tmp, **{"epochs = 1": "epochs = 3", "subset = 200": "subset = 300"})
    cli("queue", str(grid), cwd=tmp)
    worker = start("work", "--devices", "cpu", "--heartbeat", "1", "--grace", "30", cwd=tmp)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "RUNNING" not in _run_states(tmp):
        time.sleep(0.5)
    _cut_mid_line(tmp / JOURNAL, 0.6)
    out, err = worker.communicate(timeout=600)
    stopped = subprocess.CompletedProcess([], worker.returncode, out, err)
    line = error_line(stopped) or ""
    # The cut took the tickets queued after it: the line says to queue the grid again.
    requeue = cli("queue", str(grid), cwd=tmp) if "`senet queue`" in line else None
    after = cli("work", "--devices", "cpu", "--grace", "3", "--heartbeat", "1", cwd=tmp)
    reused = after.stdout.count("already finished")
    done = _status(tmp).get("done")
    ledger = _ledger(_client(tmp))
    procs = [p for p in (stopped, requeue, after) if p is not None]
    ok = ("shrank" in line and requeue is not None and requeue.returncode == 0
          and not _tracebacks(*procs) and after.returncode == 0 and done == 3
          and _clean(ledger, 3))
    return Result(ok, f"worker exit {worker.returncode}: {shorten(line, 150)}; queue again exit "
                      f"{requeue.returncode if requeue else 'not advised'}; next worker exit "
                      f"{after.returncode} ({reused} found finished in MLflow); "
                      f"{_tracebacks(*procs)} tracebacks; queue done {done}/3; "
                      f"{_ledger_text(ledger)}")


def _run_states(tmp: Path) -> list[str]:
    try:
        return [r.info.status for r in runs(tmp)]
    except Exception:  # noqa: BLE001 - the store is still being created
        return []


def journal_damaged(tmp: Path) -> Result:
    """A damaged record before the end (a torn record an older senet appended to): one
    line naming the file and the line for status, queue, plan and work; following it
    recovers the grid."""
    grid = _grid(tmp)
    cli("queue", str(grid), cwd=tmp)
    journal = tmp / JOURNAL
    lines = journal.read_bytes().split(b"\n")
    lines[5] = lines[5][: len(lines[5]) // 2] + lines[6]  # line 6, torn, then glued onto
    del lines[6]
    journal.write_bytes(b"\n".join(lines))
    procs = _every_command(tmp, grid)
    said = {name: error_line(p) or f"exit {p.returncode}" for name, p in procs.items()}
    named = sum(f"queue journal {JOURNAL} is damaged at line 6" in s for s in said.values())
    advice = re.search(r"`(mv .*?)`", said["status"])
    if advice:
        subprocess.run(advice.group(1), shell=True, cwd=tmp, check=False)
    again = cli("queue", str(grid), cwd=tmp)
    work = cli("work", "--devices", "cpu", cwd=tmp)
    done = _status(tmp).get("done")
    ledger = _ledger(_client(tmp))
    ok = named == 4 and not _tracebacks(*procs.values(), again, work) and done == 3 \
        and _clean(ledger, 3)
    return Result(ok, f"{named}/4 commands said it in one line naming the file and line 6 "
                      f"(status: {shorten(said['status'], 120)}); after the advice: queue exit "
                      f"{again.returncode}, work exit {work.returncode}, done {done}/3; "
                      f"{_ledger_text(ledger)}")


def journal_line_boundary(tmp: Path) -> Result:
    """Cut at a line boundary: it reads as an older queue (nothing in the file can tell);
    a worker redoes the lost results from MLflow without training them again."""
    grid = _grid(tmp)
    cli("queue", str(grid), cwd=tmp)
    queued = (tmp / JOURNAL).read_bytes()
    first = cli("work", "--devices", "cpu", "--max-runs", "2", cwd=tmp)
    (tmp / JOURNAL).write_bytes(queued)  # back to just after queueing, on a line boundary
    before = _status(tmp)
    work = cli("work", "--devices", "cpu", cwd=tmp)
    reused = work.stdout.count("already finished")
    done = _status(tmp).get("done")
    ledger = _ledger(_client(tmp))
    ok = first.returncode == work.returncode == 0 and reused == 2 and done == 3 \
        and _clean(ledger, 3)
    return Result(ok, f"after the cut status said done {before.get('done')}, queued "
                      f"{before.get('queued')}; work: {reused} of 3 found FINISHED in MLflow "
                      f"(not trained again), done {done}/3; {_ledger_text(ledger)}")


# ---------------------------------------------------------------------------
# 2. A full disk during a checkpoint write


def disk_full(tmp: Path) -> Result:
    if os.geteuid() != 0:
        return Result(False, "needs root to mount a 2 MB tmpfs")
    disk = tmp / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        args = ["train", "se_resnet20", "--epochs", "2", "--subset", "200", "--batch-size",
                "50", "--device", "cpu", "--out", str(disk / "run")]
        full = cli(*args, cwd=tmp)
        line = error_line(full) or f"exit {full.returncode}"
        left = sorted(p.name for p in (disk / "run").iterdir())
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = cli(*args, "--resume", cwd=tmp)
        ledger = _ledger(_client(tmp))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    ok = ("no space left on" in line and str(disk) in line and not any(
        n.endswith(".tmp") for n in left) and again.returncode == 0 and ledger["runs"] == 1
        and _clean(ledger, 1))
    return Result(ok, f"{shorten(line, 150)}; left in --out: {left}; after growing the disk "
                      f"--resume exit {again.returncode}; {_ledger_text(ledger)}")


# ---------------------------------------------------------------------------
# PostgreSQL: one private server for the cases that need it


_SERVER: dict[str, PrivatePostgres] = {}


def _postgres() -> PrivatePostgres:
    if "pg" not in _SERVER:
        folder = Path(tempfile.mkdtemp(prefix="senet-drill-pg-"))
        _SERVER["pg"] = PrivatePostgres(folder).init()
        atexit.register(_SERVER["pg"].close)
    return _SERVER["pg"]


def _databases(name: str) -> tuple[str, str]:
    """(queue URL, tracking URL) on the private server, both with the password."""
    pg = _postgres()
    return pg.create_db(f"{name}_q"), pg.create_db(f"{name}_t")


def _db_names(name: str) -> tuple[str, str]:
    _databases(name)
    return f"{name}_q", f"{name}_t"


def postgres_outage(tmp: Path) -> Result:
    """Queue and tracking on one server, stopped for 10 s under a training worker."""
    try:
        storage, tracking = _databases("outage")
    except Exception as exc:  # noqa: BLE001 - no server, no case
        return Result(False, f"no PostgreSQL server: {exc}"[:160])
    grid = _grid(tmp, "[4]", **{"epochs = 1": "epochs = 6", "subset = 200": "subset = 100"})
    # 100 images an epoch: epochs of seconds, so the 10 s outage spans an epoch's end
    cli("queue", str(grid), "--storage", storage, "--tracking-uri", tracking, cwd=tmp)
    worker = start("work", "--storage", storage, "--tracking-uri", tracking, "--devices",
                   "cpu", "--heartbeat", "2", "--grace", "60", cwd=tmp)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any("epoch 1/" in line for line in lines):
        time.sleep(0.1)
    pg = _postgres()
    pg.stop()
    time.sleep(10)
    pg.start()
    err = worker.stderr.read()
    worker.wait(timeout=600)
    reader.join(timeout=10)
    out = "".join(lines)
    waits = [line.split("] ", 1)[-1].strip() for line in out.splitlines()
             if "unreachable" in line or "answers again" in line]
    ledger = _ledger(_client(tmp, tracking))
    tracebacks = (out + err).count("Traceback")
    ok = worker.returncode == 0 and tracebacks == 0 and len(waits) == 2 and _clean(ledger, 1)
    said = " / ".join(shorten(w, 110) for w in waits)
    return Result(ok, f"worker exit {worker.returncode}, {tracebacks} tracebacks, "
                      f"{len(out.splitlines()) + len(err.splitlines())} lines; said: {said}; "
                      f"{_ledger_text(ledger)}")


def postgres_wrong_password(tmp: Path) -> Result:
    try:
        storage, _ = _databases("pw")
    except Exception as exc:  # noqa: BLE001
        return Result(False, f"no PostgreSQL server: {exc}"[:160])
    wrong = storage.replace(PASSWORD, "not-the-password")
    grid = _grid(tmp, "[4]")
    procs = {"queue": cli("queue", str(grid), "--storage", wrong, cwd=tmp),
             "status": cli("status", "--storage", wrong, cwd=tmp),
             "plan": cli("plan", str(grid), "--storage", wrong, cwd=tmp),
             "work": cli("work", "--storage", wrong, cwd=tmp)}
    lines = {n: len([x for x in p.stderr.splitlines() if x.strip()]) for n, p in procs.items()}
    named = sum("password authentication failed" in (error_line(p) or "")
                for p in procs.values())
    leaked = sum("not-the-password" in p.stdout + p.stderr for p in procs.values())
    ok = named == 4 and set(lines.values()) == {1} and not leaked
    return Result(ok, f"stderr lines {lines}; {named}/4 say 'password authentication "
                      f"failed'; {leaked} print the password")


# ---------------------------------------------------------------------------
# 3. Secrets


def _with_password_scenario(tmp: Path) -> dict:
    """A grid with one good and one diverging point, queued, worked, reported and
    tabulated with --storage and --tracking-uri that carry the password; plus a journal
    queued with that tracking URI. Returns what was printed and where the files are."""
    storage, tracking = _databases("secrets")
    grid = grid_file(tmp / "g.toml", TINY_GRID.format(title="S", reductions="[4]") +
                     '\n[[variants]]\nlabel = "diverges"\nreduction = 8\nlr = 1e6\n')
    stores = ["--storage", storage, "--tracking-uri", tracking]
    procs = [cli("queue", str(grid), *stores, cwd=tmp),
             cli("work", *stores, "--devices", "cpu", cwd=tmp),
             cli("status", *stores, cwd=tmp),
             cli("tables", "--tracking-uri", tracking, "--storage", storage, cwd=tmp),
             cli("figures", "--tracking-uri", tracking, cwd=tmp),
             cli("queue", str(grid), "--tracking-uri", tracking, "--storage",
                   str(tmp / "q.journal"), cwd=tmp)]
    return {"procs": procs, "storage": storage, "tracking": tracking,
            "journal": tmp / "q.journal"}


def _study_attrs(storage_url: str) -> list[str]:
    from senet.queue.storage import open_storage

    storage = open_storage(storage_url)
    return [json.dumps(s.user_attrs) for s in storage.get_all_studies()]


def _mlflow_texts(tracking: str, tmp: Path) -> list[str]:
    client = _client(tmp, tracking)
    texts = [json.dumps(e.tags) for e in client.search_experiments()]
    for r in client.search_runs([e.experiment_id for e in client.search_experiments()], ""):
        texts += [json.dumps(r.data.tags), json.dumps(r.data.params)]
    return texts


def secrets(tmp: Path) -> Result:
    try:
        scenario = _with_password_scenario(tmp)
    except Exception as exc:  # noqa: BLE001
        return Result(False, f"no PostgreSQL server: {exc}"[:160])
    procs = scenario["procs"]
    files = [p for p in tmp.rglob("*") if p.is_file()]
    in_files = [str(p.relative_to(tmp)) for p in files if PASSWORD.encode() in p.read_bytes()]
    printed = [line for p in procs for line in (p.stdout + p.stderr).splitlines()]
    in_lines = sum(PASSWORD in line for line in printed)
    attrs = _study_attrs(scenario["storage"]) + _study_attrs(str(scenario["journal"]))
    records = attrs + _mlflow_texts(scenario["tracking"], tmp)
    in_records = sum(PASSWORD in text for text in records)
    mode = stat.S_IMODE(scenario["journal"].stat().st_mode)
    retry = sum("--retry-failed" in line for line in printed)
    configs = len(list(tmp.rglob("config.json")))
    ok = (not in_files and not in_lines and not in_records and mode == 0o600 and retry >= 2
          and configs >= 2 and procs[0].returncode == 0)
    return Result(ok, f"password in {len(in_files)} of {len(files)} files ({configs} "
                      f"config.json), {in_lines} of {len(printed)} printed lines ({retry} with "
                      f"a retry command), {in_records} of {len(records)} study attrs / MLflow "
                      f"tags and params; journal mode {oct(mode)}"
                      + (f"; found in {in_files[:3]}" if in_files else ""))


def postgres_tables(tmp: Path) -> Result:
    """`senet tables` / `senet figures` on a postgresql:// tracking URI (psycopg2 only),
    the password given the driver's way: PGPASSWORD, with URLs that carry none."""
    try:
        storage, tracking = (_postgres().url(db, password=None) for db in _db_names("tables"))
    except Exception as exc:  # noqa: BLE001
        return Result(False, f"no PostgreSQL server: {exc}"[:160])
    env = {"PGPASSWORD": PASSWORD}
    grid = _grid(tmp, "[4]")
    stores = ["--storage", storage, "--tracking-uri", tracking]
    cli("queue", str(grid), *stores, cwd=tmp, env=env)
    cli("work", "--storage", storage, "--devices", "cpu", cwd=tmp, env=env)
    tables = cli("tables", "--tracking-uri", tracking, cwd=tmp, env=env)
    figures = cli("figures", "--tracking-uri", tracking, cwd=tmp, env=env)
    written = sorted(p.name for p in (tmp / "results").rglob("*") if p.is_file())
    found = re.search(r"(\d+)/(\d+) seeds finished", tables.stdout)
    ok = tables.returncode == figures.returncode == 0 and bool(found) and bool(written) \
        and not _tracebacks(tables, figures)
    return Result(ok, f"tables exit {tables.returncode} ({found.group(0) if found else '?'}), "
                      f"figures exit {figures.returncode}; {len(written)} files in results/; "
                      f"{_tracebacks(tables, figures)} tracebacks")


def crafted_checkpoint(tmp: Path) -> Result:
    marker = tmp / "code-ran"
    make = (f"import os, torch\nclass X:\n    def __reduce__(self):\n        return (os.system, "
            f"('touch {marker}',))\ntorch.save({{'model': X()}}, 'run/checkpoint.pt')\n")
    (tmp / "run").mkdir()
    subprocess.run([PY, "-c", make], cwd=tmp, check=True)
    proc = cli("train", "resnet20", *TINY, "--out", "run", "--resume", cwd=tmp)
    line = error_line(proc) or f"exit {proc.returncode}"
    ok = "refused" in line and not marker.exists()
    return Result(ok, f"{shorten(line, 150)}; the file's code ran: {marker.exists()}")


# ---------------------------------------------------------------------------
# 4. Paths


def grid_names(tmp: Path) -> Result:
    _client(tmp)  # a store (empty): tables and figures then read the grid file
    outcomes = []
    for bad in ("../../escape", "/tmp/escape", "tab\\there"):
        body = f'name = "{bad}"\n' + TINY_GRID.format(title="N", reductions="[4]")
        grid_file(tmp / "n.toml", body)
        procs = [cli(cmd, "n.toml", cwd=tmp) for cmd in ("queue", "tables", "figures")]
        outcomes.append(sum(bool(error_line(p)) and "name" in (error_line(p) or "")
                            for p in procs))
    outside = [p for p in tmp.parent.glob("escape*")] + list(Path("/tmp").glob("escape*"))
    ok = outcomes == [3, 3, 3] and not outside
    return Result(ok, f"'../../escape', '/tmp/escape', a tab: refused in one line by "
                      f"{outcomes} of queue/tables/figures; {len(outside)} files outside")


def label_newline(tmp: Path) -> Result:
    body = TINY_GRID.format(title="L", reductions="[4]") + \
        '\n[[variants]]\nlabel = "two\\nlines"\nreduction = 8\n'
    grid_file(tmp / "l.toml", body)
    proc = cli("queue", "l.toml", cwd=tmp)
    line = error_line(proc) or f"exit {proc.returncode}"
    queued = (tmp / JOURNAL).exists()
    return Result("label" in line and not queued,
                  f"{shorten(line, 150)}; anything queued: {queued}")


# ---------------------------------------------------------------------------
# 5. Found along the way


def declared_name_tables(tmp: Path) -> Result:
    """A grid declared `name = "rel/ctrl"` outside experiments/ whose two trainings were
    trained under another grid's tickets (the same settings and seeds)."""
    body = TINY_GRID.format(title="A", reductions="[4]").replace("seeds = [0]", "seeds = [0, 1]")
    first = grid_file(tmp / "a" / "reduction.toml", body)
    ctrl = grid_file(tmp / "b" / "ctrl.toml", 'name = "rel/ctrl"\n' + body)
    cli("queue", str(first), cwd=tmp)
    cli("queue", str(ctrl), cwd=tmp)
    work = cli("work", "--devices", "cpu", cwd=tmp)
    by_name = cli("tables", "rel/ctrl", cwd=tmp)
    by_path = cli("tables", str(ctrl), cwd=tmp)
    found = [re.search(r"(\d+/\d+) seeds finished", p.stdout) for p in (by_name, by_path)]
    said = [m.group(1) if m else "?" for m in found]
    trained = _ledger(_client(tmp))["finished"]
    ok = work.returncode == 0 and said == ["2/2", "2/2"] and trained == 2
    return Result(ok, f"{trained} trainings (under the first grid's tickets); `tables "
                      f"rel/ctrl` {said[0]}, `tables b/ctrl.toml` {said[1]} seeds finished")


def corrupt_checkpoint_advice(tmp: Path) -> Result:
    args = ["train", "se_resnet20", "--epochs", "2", "--subset", "200", "--batch-size", "50",
            "--device", "cpu", "--out", "run"]
    cli(*args, cwd=tmp)
    (tmp / "run" / "summary.json").unlink()  # as if it stopped before finishing
    (tmp / "run" / "checkpoint.pt").write_bytes(b"\0" * 4096)
    refused = cli(*args, "--resume", cwd=tmp)
    line = error_line(refused) or f"exit {refused.returncode}"
    if "delete it" in line:
        (tmp / "run" / "checkpoint.pt").unlink()
    again = cli(*args, "--resume", cwd=tmp)
    ledger = _ledger(_client(tmp))
    trash = len(_client(tmp).search_runs(
        [e.experiment_id for e in _client(tmp).search_experiments()], "", run_view_type=2))
    ok = again.returncode == 0 and ledger["runs"] == 1 and _clean(ledger, 1)
    return Result(ok, f"advice: {shorten(line, 150)}; followed: exit {again.returncode}; "
                      f"{_ledger_text(ledger)}; {trash} run in MLflow's trash")


CASES: list[Case] = [
    Case("23.2 journal cut mid-record (torn tail), then status, queue, plan, work",
         "the torn record removed and said once; all exit 0; the lost result redone from "
         "MLflow", journal_torn),
    Case("23.2 journal cut mid-line under a training worker",
         "the worker stops in one line before writing; after its advice (queue again) the next "
         "worker finishes the grid",
         journal_cut_under_worker),
    Case("23.2 journal damaged before its end (a torn record glued onto)",
         "one line naming the file and the line, in status, queue, plan and work; the "
         "advice recovers the grid", journal_damaged),
    Case("23.2 journal cut at a line boundary", "results redone from MLflow, not trained "
         "again", journal_line_boundary),
    Case("23.2 disk full during the checkpoint write (2 MB tmpfs), then --resume",
         "one line 'no space left on …'; no temp file; the resumed run FINISHED without a "
         "stale reason", disk_full),
    Case("23.2 PostgreSQL stopped for 10 s under a worker (queue and tracking on it)",
         "waited out in one line (and one when back); the point finishes, each step once",
         postgres_outage),
    Case("23.2 wrong PostgreSQL password", "one line each for queue, status, plan, work",
         postgres_wrong_password),
    Case("23.3 a password in --storage and --tracking-uri",
         "in no file, printed line, study attr or MLflow tag; journal owner-only", secrets),
    Case("23.3 a checkpoint that would run code on --resume", "refused in one line; its code "
         "never runs", crafted_checkpoint),
    Case("23.4 grid names that leave their folder", "refused in one line by queue, tables "
         "and figures", grid_names),
    Case("23.4 a label with a newline", "refused in one line", label_newline),
    Case("23.5 `senet tables` / `figures` on a postgresql:// tracking URI", "both work",
         postgres_tables),
    Case("23.5 tables of a grid declared with name = outside experiments/",
         "finds the trainings shared with another grid (2/2)", declared_name_tables),
    Case("23.5 the corrupt-checkpoint advice followed", "one run, each step once",
         corrupt_checkpoint_advice),
]

