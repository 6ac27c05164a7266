"""Shared fixtures: a real OpenAI-compatible server on 127.0.0.1, an isolated cache, clean settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import dsr_core as dsr
from dsr_core.runtime import runtime
from dsr_core.testing.server import LMTestServer


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory (the default cache follows DSR_CACHE_DIR)."""
    directory = tmp_path / "dsr-cache"
    monkeypatch.setenv("DSR_CACHE_DIR", str(directory))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return directory


@pytest.fixture(autouse=True)
def fresh_runtime():
    """After every test, the runtime's clients are closed, its default cache, memos and history dropped and the
    collector's thresholds put back."""
    yield
    runtime().reset()


@pytest.fixture(autouse=True)
def clean_settings():
    saved = dsr.settings.snapshot()
    yield
    dsr.settings.restore(saved)


@pytest.fixture
def server():
    with LMTestServer() as srv:
        yield srv


@pytest.fixture
def lm(server):
    """An LM pointed at the test server, with fast retries."""
    return dsr.LM("test-model", api_base=server.url, retry_backoff=(0.01, 0.05), timeout=5.0)


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness per session (it takes ~14 s to start)."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


class MotoS3:
    """moto's S3 server on 127.0.0.1 (as s3fs's own tests use it); stop() and start() simulate an outage."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.stop()

    def restart(self) -> None:
        """A new server on the same port; moto keeps its buckets in process memory, so nothing is lost."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self._server.start()


@pytest.fixture
def moto_s3(monkeypatch):
    server = MotoS3()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_S3": server.endpoint,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_s3):
    """An s3fs filesystem on the moto server."""
    import s3fs

    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_s3.endpoint})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real ``prefect server start`` on 127.0.0.1 for subprocesses and worker processes (~16 s to start)."""
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
