"""Issue 23, section 3: a password given in --storage / --tracking-uri URLs is in no file
senet writes (runs, artifacts, results, the journal), no study attribute or MLflow record,
and no line it prints (retry commands included); the journal is created owner-only.

The password is the test server's (SENET_TEST_POSTGRES_URL). Where it is also a word of
the URL (`.ci/postgres.sh` makes the role, password and database all `senet...`), the
search is for the URL's `user:password@` form, the way a leaked URL holds it; a distinctive
password is searched for on its own as well (benchmarks/fault_drill.py does that, with a
server of its own)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import warm_procs
from pg_databases import databases, tiny_grid
from sqlalchemy.engine import make_url

from senet.queue.storage import open_storage
from senet.urls import with_driver

# One point that trains and one that diverges (FAILED): work and status then print the
# command that retries it.
GRID = tiny_grid() + '[[variants]]\nlabel = "diverges"\nreduction = 8\nlr = 1e6\n'


def _needles(url: str) -> list[bytes]:
    parsed = make_url(url)
    password = parsed.password
    assert password, "SENET_TEST_POSTGRES_URL must carry a password for this test"
    needles = [f"{parsed.username}:{password}@", f":{password}@"]
    words = {parsed.username, parsed.database, parsed.host, "senet"}
    if len(password) >= 6 and not any(password in w or w in password for w in words if w):
        needles.append(password)
    return [n.encode() for n in needles]


def _run(args: list[str], folder: Path) -> tuple[int, str]:
    proc = warm_procs.Senet(args, folder)
    code = proc.wait(600)
    return code, proc.stdout + proc.stderr


def _records(queue_url: str, journal: Path, tracking_url: str) -> list[str]:
    from mlflow import MlflowClient

    texts = []
    for storage in (open_storage(queue_url), open_storage(str(journal))):
        texts += [json.dumps(s.user_attrs) for s in storage.get_all_studies()]
    client = MlflowClient(with_driver(tracking_url))
    exps = client.search_experiments()
    texts += [json.dumps(e.tags) for e in exps]
    for run in client.search_runs([e.experiment_id for e in exps], ""):
        texts += [json.dumps(run.data.tags), json.dumps(run.data.params)]
    return texts


@pytest.mark.slow
def test_a_password_in_the_urls_is_never_stored_or_printed(tmp_path, postgres_url):
    with databases(postgres_url, "secrets_q", "secrets_t") as (queue_url, tracking_url):
        needles = _needles(queue_url)
        grid = tmp_path / "g.toml"
        grid.write_text(GRID)
        journal = tmp_path / "q.journal"
        stores = ["--storage", queue_url, "--tracking-uri", tracking_url]
        printed = []
        for args in (["queue", str(grid), *stores],
                     ["work", *stores, "--devices", "cpu"],
                     ["status", *stores],
                     ["tables", "--tracking-uri", tracking_url, "--storage", queue_url],
                     ["figures", "--tracking-uri", tracking_url],
                     ["queue", str(grid), "--storage", str(journal), "--tracking-uri",
                      tracking_url]):
            code, output = _run(args, tmp_path)
            printed.append(output)
            assert "Traceback" not in output, output
        assert sum("--retry-failed" in out for out in printed) == 2  # work's and status's
        assert "seeds finished" in printed[3]  # the tables were written

        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.name == "config.json" for p in files)  # the runs' own and MLflow's copy
        assert len([p for p in files if p.name == "config.json"]) >= 2
        leaks = [str(p.relative_to(tmp_path)) for p in files
                 if any(n in p.read_bytes() for n in needles)]
        assert leaks == []
        lines = "\n".join(printed).encode()
        assert not any(n in lines for n in needles)
        records = _records(queue_url, journal, tracking_url)
        assert any("senet.tracking_uri" in r for r in records)
        assert not any(n.decode() in r for n in needles for r in records)
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600


@pytest.mark.parametrize("command", [["queue", "GRID"], ["status"], ["plan", "GRID"],
                                     ["work"]])
def test_a_wrong_password_is_one_line_for_every_command(tmp_path, postgres_url, capsys,
                                                        monkeypatch, command):
    from senet.cli import main as cli_main

    monkeypatch.chdir(tmp_path)  # `senet queue` checks ./mlflow.db before the storage
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    wrong = make_url(postgres_url).set(password="not-the-password").render_as_string(
        hide_password=False)
    args = [str(grid) if a == "GRID" else a for a in command]
    assert cli_main([*args, "--storage", wrong]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "password authentication failed" in err[0]
    assert "not-the-password" not in err[0] and ":***@" in err[0]
