"""The evaluate flow with tasks in other processes: a 2-worker Dask LocalCluster, and a process pool.

Worker processes cannot reach Prefect's ephemeral in-process server, so these tests start a real
``prefect server start`` on 127.0.0.1 and run ``dsr evaluate`` in a subprocess against it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.programs import upper_answer, write_dataset

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
    }
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("prefect server did not start within 120 s")
    yield {"url": url, "home": str(home)}
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


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
