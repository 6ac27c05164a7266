"""The evaluate flow with tasks in other processes: a 2-worker Dask LocalCluster, and a process pool.

Worker processes cannot reach Prefect's ephemeral in-process server, so these tests use a real
``prefect server start`` on 127.0.0.1 (the ``prefect_server`` fixture) and run ``dsr evaluate`` in a
subprocess against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.programs import upper_answer, write_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("runner", ["dask", "process"])
def test_evaluate_flow_in_worker_processes(prefect_server, server, tmp_path, runner):
    server.responder = upper_answer
    data = write_dataset(tmp_path / "dev.jsonl", 24, wrong_every=4)
    (tmp_path / "eval.toml").write_text(f"""
[program]
ref = "tests.programs:QA"
[data]
dev = "{data}"
input_keys = ["question"]
[metric]
ref = "tests.programs:exact_upper"
[lm]
model = "test-model"
api_base = "{server.url}"
[run]
name = "{runner}-run"
artifacts_url = "{tmp_path / "artifacts"}"
task_runner = "{runner}"
max_workers = 2
shard_size = 4
[mlflow]
tracking_uri = "sqlite:///{tmp_path / "mlflow.db"}"
""")
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server["url"],
        "PREFECT_HOME": prefect_server["home"],
        "PYTHONPATH": str(ROOT),
        "DSR_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "evaluate", str(tmp_path / "eval.toml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "75.00" in result.stdout  # 18 of 24 gold answers are right
    table = pq.read_table(tmp_path / "artifacts" / f"{runner}-run" / "evaluation.parquet")
    assert table.num_rows == 24
    assert server.stats.requests == 24
