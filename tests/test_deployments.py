"""deployments/ against a real ``prefect server start``: prefect.yaml deployed with ``prefect deploy``, a
process work pool and worker, a run of each deployment; then a spot-instance preemption of the nightly
optimization (its flow process killed), rescheduled by the automation and finished by a new worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.test_flow_optimize import make_config
from tests.test_monitor import judge

ROOT = Path(__file__).resolve().parents[1]
POOL = "dsr-process"


def toml(config: dict) -> str:
    return "\n".join(
        f"[{section}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None)
        for section, values in config.items()
    )


class Worker:
    """``prefect worker start`` for the pool, in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def flow_processes(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def work_pool(env: dict[str, str], action: str) -> None:
    """``prefect work-pool pause|resume`` for the test pool."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "work-pool", action, POOL], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """The project's prefect.yaml deployed to the real server, with its process work pool."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server["url"],
        "PREFECT_HOME": prefect_server["home"],
        "DSR_PROJECT_DIR": str(ROOT),
        "PYTHONPATH": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    for command in (
        ["work-pool", "create", POOL, "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *command], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"env": env, "url": prefect_server["url"]}


@pytest.fixture
def api(deployed):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: deployed["url"]}):
        yield


def wait_for(flow_run_id, states, timeout=240, every=0.5):
    from prefect import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read():
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)

    deadline = time.time() + timeout
    while time.time() < deadline:
        run = run_coro_as_sync(read())
        if run.state and run.state.name in states:
            return run
        time.sleep(every)
    pytest.fail(f"flow run {flow_run_id} did not reach {states}; last state {run.state.name if run.state else None}")


def worker_env(deployed, tmp_path) -> dict[str, str]:
    """The deployment environment with this test's own LM cache: flow runs inherit their worker's environment,
    and a cache shared with another test's identical optimization would answer this test's requests."""
    return {**deployed["env"], "DSR_CACHE_DIR": str(tmp_path / "lm-cache")}


def project(tmp_path, server):
    """The optimize tests' project plus a judge and a monitor, as a TOML file; run names come from flow runs."""
    config = make_config(tmp_path, server, name=None, register_as="wordcode")
    config["judge_lm"] = {"model": "judge-model", "api_base": server.url}
    config["monitor"] = {"log_url": str(tmp_path / "prodlog"), "model": "wordcode", "sample": 1.0, "min_examples": 5}
    path = tmp_path / "project.toml"
    path.write_text(toml(config))
    return str(path)


def test_each_deployment_runs_on_a_worker(deployed, api, server, tmp_path):
    from prefect.deployments import run_deployment

    from flows.services.production_log import ProductionLog
    from tests.programs import code

    server.responder = judge
    config = project(tmp_path, server)
    log = ProductionLog(str(tmp_path / "prodlog"))
    for i in range(6):
        log.append({"inputs": {"word": f"p{i}q"}, "outputs": {"code": code(f"p{i}q")}})
    log.close()

    worker = Worker(worker_env(deployed, tmp_path), tmp_path / "worker.log")
    try:
        for name in ("dsr-evaluate/evaluate", "dsr-optimize/nightly", "dsr-monitor/hourly"):
            run = run_deployment(name, parameters={"config": config}, timeout=0)
            finished = wait_for(run.id, {"Completed", "Failed", "Crashed"})
            assert finished.state.name == "Completed", (name, (tmp_path / "worker.log").read_text()[-4000:])
    finally:
        worker.stop()
    checkpoints = list((tmp_path / "checkpoints").iterdir())
    assert len(checkpoints) == 1 and json.loads((checkpoints[0] / "latest.json").read_text())["step"] > 0
    assert (tmp_path / "prodlog" / "_monitor" / "state.json").exists()


def test_a_preempted_optimization_is_rescheduled_and_resumes_on_a_new_worker(deployed, api, server, tmp_path):
    import importlib.util

    from prefect.deployments import run_deployment

    from flows.checkpoint import CheckpointStore
    from flows.config import load_config
    from flows.optimize import run_optimization

    spec = importlib.util.spec_from_file_location("automations", ROOT / "deployments" / "automations.py")
    automations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(automations)
    automations.retry_crashed("dsr-optimize/nightly")

    # The whole run takes a few seconds, so the endpoint holds every request once step 3 is checkpointed
    # until the kill has happened: the run cannot finish before it is preempted, however slow this test is.
    pointer: Path | None = None
    killed = threading.Event()

    def step() -> int:
        try:
            return json.loads(pointer.read_text())["step"] if pointer is not None and pointer.exists() else -1
        except ValueError:  # read while it was being replaced
            return -1

    def held_until_the_kill(request):
        if not killed.is_set() and step() >= 3:
            killed.wait(120)
        return judge(request)

    server.responder = held_until_the_kill
    server.latency = 0.1
    config = project(tmp_path, server)
    env = worker_env(deployed, tmp_path)
    worker = Worker(env, tmp_path / "worker.log")
    run = run_deployment("dsr-optimize/nightly", parameters={"config": config}, timeout=0)
    pointer = tmp_path / "checkpoints" / f"optimize-bootstrapfewshotwithrandomsearch-{str(run.id)[:8]}" / "latest.json"
    wait_for(run.id, {"Running"}, timeout=180, every=0.1)
    # Once this worker has the run, the pool is paused, so that the worker (which lives on until it has
    # reported the crash) cannot take the rescheduled run itself: only the new worker may run it.
    work_pool(env, "pause")
    try:
        deadline = time.time() + 180
        while step() < 3 and time.time() < deadline:
            time.sleep(0.05)
        killed_at = step()
        assert killed_at >= 3, (tmp_path / "worker.log").read_text()[-4000:]
        for process in worker.flow_processes():  # the spot instance goes away under the flow
            process.kill()
        killed.set()
        wait_for(run.id, {"Crashed", "Scheduled", "AwaitingRetry"}, timeout=60, every=0.05)
        worker.stop()  # ... and with it this worker
        wait_for(run.id, {"Scheduled", "AwaitingRetry"}, timeout=120)  # the automation reschedules the same run
    finally:
        work_pool(env, "resume")
    worker = Worker(env, tmp_path / "worker2.log")  # a new machine joins the pool
    try:
        finished = wait_for(run.id, {"Completed", "Failed", "Crashed"})
    finally:
        worker.stop()
    assert finished.state.name == "Completed", (tmp_path / "worker2.log").read_text()[-4000:]

    checkpoint = CheckpointStore(str(tmp_path / "checkpoints"), pointer.parent.name).read_latest()
    assert checkpoint["report"]["resumed"] and killed_at < checkpoint["report"]["steps"]
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    overrides = [
        'run.name="reference"',
        f'run.checkpoint_url="{reference_dir / "checkpoints"}"',
        f'run.artifacts_url="{reference_dir / "artifacts"}"',
        'mlflow.register_as=""',
    ]
    reference = run_optimization(load_config(config, overrides))  # this test's own LM cache: nothing cached
    assert checkpoint["report"]["optimized_score"] == reference.optimized_score
    program = json.loads(Path(checkpoint["report"]["program_url"]).read_text())
    assert program == json.loads(Path(reference.program_url).read_text())


def test_the_shipped_deployment_config_is_valid():
    from flows.config import load_config

    config = load_config(ROOT / "deployments" / "configs" / "project.toml")
    assert config.monitor is not None and config.monitor.optimize_deployment == "dsr-optimize/nightly"
    assert config.mlflow.register_as == config.monitor.model
