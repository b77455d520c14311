"""Tracking under concurrency: workers that start on the same data at the same moment."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

WORKER = """
import sys, time
from senet.tracking import RunTracker
uri, at, tag = sys.argv[1], float(sys.argv[2]), sys.argv[3]
tracker = RunTracker(uri, "race")
tracker.start(run_id=None, tags={"who": tag}, parent_run_id=None, run_name=tag,
              system_metrics=False)
while time.time() < at:
    time.sleep(0.001)
tracker.log_dataset("builtin", "senet://builtin/x", "abc123", "training")
tracker.finish()
"""


def test_simultaneous_dataset_logging_never_fails_a_run(tmp_path):
    # MLflow inserts an experiment's dataset row check-then-insert; without the retry in
    # RunTracker.log_dataset, most rounds of three simultaneous workers lost one run.
    for round_ in range(2):
        uri = f"sqlite:///{tmp_path}/race{round_}.db"
        MlflowClient(uri).create_experiment("race")
        start_at = time.time() + 6  # after every process has imported mlflow
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, uri, str(start_at), tag],
                                  env={**os.environ, "SENET_SYSTEM_METRICS": "0"},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for tag in "abc"]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
        assert len(runs) == 3
        assert all(r.info.status == "FINISHED" and r.inputs.dataset_inputs for r in runs)
