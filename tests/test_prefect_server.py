"""Prefect's ephemeral server dies with the dsr process: real runs in subprocesses, killed with SIGKILL, and
every process they started is checked for (psutil)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from dsr_core.testing.server import LMTestServer
from tests.programs import upper_answer, write_dataset

ROOT = Path(__file__).resolve().parents[1]
SERVER_APP = "prefect.server.api.server:create_app"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def ephemeral_env(tmp_path: Path) -> dict[str, str]:
    """No PREFECT_API_URL (so Prefect's ephemeral mode), its own PREFECT_HOME, the tests importable."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    return env


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def servers(processes: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for process in processes:
        try:
            if SERVER_APP in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def wait_for(condition, what: str, child: subprocess.Popen, log: Path, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if child.poll() is not None:
            pytest.fail(f"the run exited ({child.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return value


def kill_and_expect_no_survivors(child: subprocess.Popen, descendants: list[psutil.Process]) -> None:
    """SIGKILL ``child``; every process it had started must be gone within a generous deadline."""
    commands = {}
    for process in descendants:
        try:
            commands[process.pid] = " ".join(process.cmdline())[:120]
        except psutil.NoSuchProcess:
            pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 60
    while (survivors := [p for p in descendants if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    described = [f"{p.pid} {commands.get(p.pid, '')}" for p in survivors]
    assert not survivors, "still running 60 s after the run was killed:\n" + "\n".join(described)


@contextlib.contextmanager
def started(args: list[str], cwd: Path, env: dict[str, str], **streams):
    """``subprocess.Popen`` for a test: whatever the test does, the child is not left running."""
    child = subprocess.Popen(args, cwd=cwd, env=env, **streams)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def toml(config: dict) -> str:
    return "\n".join(
        f"[{section}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        for section, values in config.items()
    )


def test_a_sigkilled_dsr_evaluate_leaves_no_prefect_server(tmp_path):
    """``dsr evaluate`` on embedded defaults, killed while it waits on a slow LM: its ephemeral Prefect server
    (and anything else it started) goes with it. Before the fix the server stayed, on every kill."""
    with LMTestServer(upper_answer, latency=1.0) as lm:
        config = {
            "program": {"ref": "tests.programs:QA"},
            "data": {"dev": write_dataset(tmp_path / "dev.jsonl", 400), "input_keys": ["question"]},
            "metric": {"ref": "tests.programs:exact_upper"},
            "lm": {"model": "test-model", "api_base": lm.url, "max_concurrency": 4, "num_retries": 0},
            "run": {"name": "killed", "artifacts_url": str(tmp_path / "artifacts")},
            "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        }
        (tmp_path / "eval.toml").write_text(toml(config))
        log = tmp_path / "dsr.log"
        command = [str(Path(sys.executable).parent / "dsr"), "evaluate", str(tmp_path / "eval.toml")]
        with started(
            command, tmp_path, ephemeral_env(tmp_path), stdout=log.open("wb"), stderr=subprocess.STDOUT
        ) as child:
            wait_for(lambda: lm.stats.requests > 0, "LM request (the flow running its tasks)", child, log)
            descendants = psutil.Process(child.pid).children(recursive=True)
            assert len(servers(descendants)) == 1, [p.cmdline() for p in descendants]
            kill_and_expect_no_survivors(child, descendants)


THREAD_SCRIPT = """
import threading, time, urllib.request
from prefect import flow
from flows.services.prefect_server import ephemeral_api, guarded_server, is_guarded

urls = []

def start():
    with ephemeral_api() as url:
        urls.append(url)

starter = threading.Thread(target=start)
starter.start()
starter.join()
time.sleep(2)  # PR_SET_PDEATHSIG would have fired when the starting thread ended
server = guarded_server()
assert is_guarded(server) and server.running and server.server_process.poll() is None
urllib.request.urlopen(urls[0] + "/health", timeout=10).read()

@flow
def hello():
    return "hi"

assert hello() == "hi"  # after the block, Prefect's own ephemeral client finds the same registered server
print("ready", server.server_process.pid, flush=True)
time.sleep(600)
"""


def test_the_server_outlives_the_thread_that_started_it_and_dies_with_the_process(tmp_path):
    """Started from a thread that then ends, the server keeps serving (the fork is made on a thread that lives
    as long as the process); flows after the block use it too; a SIGKILL of the process takes it down."""
    log = tmp_path / "script.log"
    with started(
        [sys.executable, "-c", THREAD_SCRIPT],
        ROOT,
        ephemeral_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[:1] == ["ready"], log.read_text()[-3000:]
        descendants = psutil.Process(child.pid).children(recursive=True)
        assert [p.pid for p in servers(descendants)] == [int(line[1])]
        kill_and_expect_no_survivors(child, descendants)


POOL_SCRIPT = """
from prefect import flow
from prefect.task_runners import ProcessPoolTaskRunner
from flows.services.prefect_server import ephemeral_api, exit_with_parent
from slow_tasks import slow

@flow(task_runner=ProcessPoolTaskRunner(max_workers=2, initializer=exit_with_parent))
def busy():
    return [future.result() for future in [slow.submit(i) for i in range(40)]]

if __name__ == "__main__":
    with ephemeral_api():
        busy()
"""

SLOW_TASKS = """
import os, time
from pathlib import Path
from prefect import task

@task
def slow(i):
    Path(os.environ["MARKERS"], str(os.getpid())).touch()
    time.sleep(5)
    return i
"""


def test_process_pool_workers_use_the_one_server_and_exit_with_the_parent(tmp_path):
    """``task_runner = "process"``: the workers talk to the parent's server (unguarded, each started a server
    of its own) and, with ``exit_with_parent`` as the pool's initializer, end when the parent is killed
    (else they wait for work forever)."""
    (tmp_path / "slow_tasks.py").write_text(textwrap.dedent(SLOW_TASKS))
    (tmp_path / "pool.py").write_text(textwrap.dedent(POOL_SCRIPT))
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {**ephemeral_env(tmp_path), "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "MARKERS": str(markers)}
    log = tmp_path / "pool.log"
    command = [sys.executable, str(tmp_path / "pool.py")]
    with started(command, tmp_path, env, stdout=log.open("wb"), stderr=subprocess.STDOUT) as child:
        wait_for(lambda: len(list(markers.iterdir())) >= 2, "two busy workers", child, log)
        descendants = psutil.Process(child.pid).children(recursive=True)
        workers = {int(marker.name) for marker in markers.iterdir()}
        assert workers <= {p.pid for p in descendants}
        assert len(servers(descendants)) == 1, [p.cmdline() for p in descendants]
        kill_and_expect_no_survivors(child, descendants)


def test_the_server_command_is_prefects():
    """The command dsr runs is the one this Prefect runs for its ephemeral server (read from a real start: the
    arguments Prefect passed to Popen; the child's /proc cmdline reads empty while it is still exec-ing)."""
    import socket

    from prefect.server.api.server import SubprocessASGIServer

    from flows.services.prefect_server import server_command

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = SubprocessASGIServer(port=port)
    try:
        server.server_process = server._run_uvicorn_command()
        assert list(server.server_process.args) == server_command(port)
    finally:
        server.stop()


def test_nothing_is_started_when_prefect_api_url_is_set():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.services.prefect_server import ephemeral_api, registered_servers

    before = registered_servers()
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}), ephemeral_api() as url:
        assert url is None and PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
    assert registered_servers() == before
