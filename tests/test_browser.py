"""The MLflow dashboard in a real browser: a finished tiny grid, `mlflow server` on
127.0.0.1, headless Chromium (Debian's package) driven by Playwright.

What a new user sees is the point: the link `senet tables` prints must open senet's saved
view of the experiment in the model-training view: the runs by name, grouped by label, with
the error and cost columns and each run's numbers in them. The screenshot is kept under
$SENET_TEST_ARTIFACTS (default: the test's tmp folder) and its path printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from senet.cli import main

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip; Playwright adds a fresh --user-data-dir of its own

TINY = """
name = "browser"
title = "browser check"
paper_table = "reduction"
baseline = "ResNet-20"
dataset = "builtin"
preset = "fast"
model = "se_resnet20"
epochs = 1
subset = 100
batch_size = 50
workers = 0
seeds = [0]

[[variants]]
label = "ResNet-20"
model = "resnet20"

[[variants]]
label = "SE (r=4)"
reduction = 4
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium installed (Debian: apt-get install chromium); browser test skipped")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text()[-2000:]
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server not up after {seconds:.0f} s:\n{log.read_text()[-2000:]}")


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SENET_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow
def test_dashboard_shows_the_grid_runs_in_chromium(tmp_path, monkeypatch, artifacts, capsys,
                                                   _mlflow_template):
    chromium = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENET_SYSTEM_METRICS", "0")
    (tmp_path / "browser.toml").write_text(TINY)
    # A migrated store (a new one is tested in test_train_faults), so that the server can
    # open it before the grid is trained: the server's start (seconds of imports, mostly
    # on one core) then runs while the grid trains, instead of after it.
    shutil.copy(_mlflow_template, tmp_path / "mlflow.db")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = _free_port()
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        # MLflow 3's server also starts a job runner and seven queue consumers, each a
        # Python process importing MLflow: seconds of CPU for jobs this test never runs.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    try:
        # Training exports its store as MLFLOW_TRACKING_URI; monkeypatch restores it
        # afterwards, so later tests in this process do not inherit this one's store.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
        common = ["--storage", str(tmp_path / "queue.journal"), "--tracking-uri", store]
        assert main(["queue", "browser.toml", *common]) == 0
        assert main(["work", "browser.toml", *common, "--devices", "cpu"]) == 0

        from mlflow import MlflowClient

        client = MlflowClient(store)
        experiment = client.get_experiment_by_name("browser")
        assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
        runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}

        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/health", server, log, 60)
        # The link exactly as `senet tables` prints it for a tracking server.
        capsys.readouterr()
        assert main(["tables", "browser.toml", "--tracking-uri", base, "--out", "res"]) == 0
        printed = capsys.readouterr().out
        links = [word for word in printed.split() if "viewStateShareKey=" in word]
        assert len(links) == 1 and links[0].startswith(f"{base}/#/experiments/"), printed
        shot = artifacts / "mlflow_experiment.png"
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(links[0])
                # Rendered by React after the runs are fetched: wait for a run's name.
                page.get_by_text("ResNet-20 · s0").first.wait_for(timeout=90_000)
                page.get_by_text("SE (r=4) · s0").first.wait_for(timeout=10_000)
                header = page.get_by_role("columnheader", name="final_val_top1_err")
                header.first.wait_for(timeout=30_000)
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot: {shot}")
                text = page.inner_text("body")
            finally:
                browser.close()
    finally:
        # The server and its uvicorn worker; SIGKILL: nothing in them needs a clean exit
        # (they only read the store), and a graceful stop takes seconds.
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=60)

    assert "No data available" not in text, "the experiment opened in MLflow's GenAI view"
    assert "senet: errors, params, GMACs by variant" in text  # the saved view, by name
    assert "Group by: senet.label" in text
    lines = text.splitlines()
    for column in ("final_val_top1_err", "best_val_top1_err", "params", "gmacs"):
        assert column in lines, f"no {column} column on the runs page"
    # Top-5 error says next to nothing with 10 classes: the view leaves it out.
    assert not any("top5" in line for line in lines)
    # Each run's own numbers are in the table, not only the column names.
    for name in ("ResNet-20 · s0", "SE (r=4) · s0"):
        metrics = runs[name].data.metrics
        assert f"{metrics['final_val_top1_err']:g}" in lines
        assert f"{metrics['params']:g}" in lines
