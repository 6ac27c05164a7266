"""``PythonInterpreter``: model-written Python run in Pyodide (CPython on WebAssembly) inside a Deno process.

Deno's permissions are the sandbox: the process may read the runner and, until Pyodide has loaded, Deno's
cache; anything else (files to read or write, environment variables, network hosts) only when the caller
lists it. Files listed are mounted at ``/sandbox/<basename>`` and written back after each execution.

As DSPy's: ``execute(code, variables=None)`` returns the value of the code's last expression, else what it
printed, or a ``FinalOutput`` when it called ``SUBMIT(...)``; a syntax error raises ``SyntaxError``, an
exception in the code a ``CodeExecutionError`` (the session goes on), a dead or misbehaving process a
``CodeInterpreterError`` (the session is over). Host ``tools`` are callable from the code by name.

Beyond DSPy's: an execution has a ``timeout`` (default 120 s; the process is killed and the session ends,
instead of hanging the caller forever); at most ``max_sandboxes`` (a setting, default 4) processes run at
once in a process, each ~190 MB, so an evaluation with 64 calls in flight does not start 64 of them; an
instance may be used from any thread (its calls are serialized), and ``aexecute``/``astart``/``ashutdown``
run them off the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import itertools
import json
import keyword
import logging
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

from ..callback import with_callbacks
from .protocol import SIMPLE_TYPES, CodeExecutionError, CodeInterpreterError, FinalOutput

log = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("runner.js")
DENO_VERSIONS = ((2, 0, 0), (3, 0, 0))  # supported: at least the first, below the second
STARTUP_TIMEOUT = 300.0  # the first start downloads Pyodide from the npm registry into Deno's cache
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_SANDBOXES = 4
INSTALL_HINT = 'install Deno 2 with `pip install "dsr[code]"` (or put a `deno` 2.x on PATH)'


# -- Deno ------------------------------------------------------------------------------------------------------
def find_deno() -> str:
    """The Deno of the ``deno`` Python package (the ``code`` extra) when installed, else one on PATH."""
    try:
        from deno import find_deno_bin  # type: ignore[import-not-found]

        return str(find_deno_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("deno")
        if found is None:
            raise CodeInterpreterError(f"PythonInterpreter needs Deno and none was found: {INSTALL_HINT}") from None
        return found


def _deno_environment() -> dict[str, str]:
    # No package.json of the caller's working directory may change what the runner imports.
    return {**os.environ, "DENO_NO_PACKAGE_JSON": "1"}


@functools.cache
def _deno_info(deno: str) -> tuple[tuple[int, ...], str | None]:
    """Deno's version and its cache folder (where Pyodide's files are), asked once per executable."""
    try:
        done = subprocess.run(
            [deno, "info", "--json"], capture_output=True, text=True, timeout=30, env=_deno_environment(), check=False
        )
        info = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        raise CodeInterpreterError(f"could not run {deno!r} ({exc}): {INSTALL_HINT}") from exc
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", str(info.get("denoVersion", "")))
    if match is None:
        raise CodeInterpreterError(f"could not read the version of {deno!r}: {INSTALL_HINT}")
    return tuple(int(part) for part in match.groups()), info.get("denoDir")


def _real(path: os.PathLike[str] | str) -> str:
    # Deno checks permissions against real paths: a symlinked entry would deny what it names.
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


# -- how many sandboxes run at once --------------------------------------------------------------------------
class SandboxSlots:
    """A process-wide count of running sandboxes, capped by the ``max_sandboxes`` setting (read at each start,
    so changing it takes effect for the next one)."""

    def __init__(self) -> None:
        self._running = 0
        self._changed = threading.Condition()

    def acquire(self, limit: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._running < max(1, limit))
            self._running += 1

    def release(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    @property
    def running(self) -> int:
        return self._running


SLOTS = SandboxSlots()
# The interpreters whose tool the current call runs inside (a contextvar: it follows the tool into the tasks and
# threads it starts with the context, and no other caller sees it).
_IN_TOOL: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "dsr_in_interpreter_tool", default=frozenset()
)
# Blocking sandbox calls made for async callers run here, never on the event loop; threads waiting for a
# slot are cheap, so there are more of them than slots.
_EXECUTOR = ThreadPoolExecutor(max_workers=32, thread_name_prefix="dsr-sandbox")


def _max_sandboxes() -> int:
    from .. import settings

    return int(settings.get("max_sandboxes") or DEFAULT_MAX_SANDBOXES)


# -- values across the boundary ------------------------------------------------------------------------------
def to_jsonable(value: Any) -> Any:
    """Python values as JSON: pydantic models, dataclasses and named tuples as dicts, tuples and sets as lists."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return to_jsonable(value._asdict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    raise CodeInterpreterError(f"a value of type {type(value).__name__} cannot be passed into the sandbox (not JSON)")


def tool_parameters(function: Callable[..., Any]) -> list[dict[str, Any]]:
    """A host tool's parameters as the sandbox's wrapper declares them: names, JSON defaults."""
    parameters = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        entry: dict[str, Any] = {"name": name}
        if parameter.annotation in SIMPLE_TYPES:
            entry["type"] = parameter.annotation.__name__
        if parameter.default is not parameter.empty:
            entry["default"] = to_jsonable(parameter.default)
        parameters.append(entry)
    return parameters


# -- the interpreter -----------------------------------------------------------------------------------------
class PythonInterpreter:
    """``with PythonInterpreter() as interp: interp("print(1 + 2)")`` returns ``"3\\n"``.

    DSPy's arguments: ``deno_command`` (the whole command, replacing dsr's), ``enable_read_paths``,
    ``enable_write_paths`` (also readable; written back after each execution when ``sync_files``),
    ``enable_env_vars`` (names), ``enable_network_access`` (hosts), ``tools`` (name -> host function, called
    with keyword arguments; its result goes back as JSON, or as text when it is not JSON), ``output_fields``
    (``[{"name": ..., "type": ...}]``: ``SUBMIT`` takes these), ``callbacks``. dsr's: ``timeout`` (seconds per
    execution, ``None`` for no limit).
    """

    execution_instructions = (
        "Python runs in Pyodide/WebAssembly. State persists across executions, but subprocesses and native "
        "extensions are unavailable. Python standard libraries such as re, json, collections, and math are "
        "available. Host filesystem, environment, and network access require explicit permission."
    )

    def __init__(
        self,
        deno_command: list[str] | None = None,
        enable_read_paths: list[os.PathLike[str] | str] | None = None,
        enable_write_paths: list[os.PathLike[str] | str] | None = None,
        enable_env_vars: list[str] | None = None,
        enable_network_access: list[str] | None = None,
        sync_files: bool = True,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        if deno_command is not None and not isinstance(deno_command, list):
            raise TypeError(f"deno_command must be a list of strings, not {type(deno_command).__name__}")
        self.enable_read_paths = list(enable_read_paths or [])
        self.enable_write_paths = list(enable_write_paths or [])
        self.enable_env_vars = [str(name).strip() for name in enable_env_vars or []]
        self.enable_network_access = [str(host) for host in enable_network_access or []]
        self.sync_files = sync_files
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self.callbacks = list(callbacks or [])
        self.timeout = timeout
        self._mounts = self._mount_table()
        self._custom_command = list(deno_command) if deno_command else None
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)
        self._lock = threading.RLock()
        self._holds_slot = False
        self._ended = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    @with_callbacks
    def start(self) -> None:
        """Start the sandbox (``execute`` does it lazily). A session that ended cannot be restarted: its Python
        state is gone, so a new interpreter is the honest way to a fresh one."""
        with self._lock:
            self._check_active()
            if self._process is not None:
                self._check_alive()
                return
            command = self._command()
            SLOTS.acquire(_max_sandboxes())
            self._holds_slot = True
            try:
                self._spawn(command)
                self._await_ready()
                self._mount_files()
                self._register()
            except BaseException:
                self._end()
                raise

    @with_callbacks
    def shutdown(self) -> None:
        with self._lock:
            process, was_active = self._process, not self._ended
            if process is not None and process.poll() is None and was_active:
                try:
                    self._send({"method": "shutdown"})
                    process.stdin.close()  # type: ignore[union-attr]
                    process.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired, CodeInterpreterError):
                    pass
            self._end()

    def __enter__(self) -> PythonInterpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __del__(self) -> None:  # a forgotten interpreter must not keep its process, nor its slot
        try:
            self._end()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass

    # -- running code ------------------------------------------------------------------------------------------
    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    @with_callbacks
    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        if id(self) in _IN_TOOL.get():  # this call comes from one of its own tools; another caller waits instead
            raise CodeInterpreterError("a tool of this PythonInterpreter tried to execute code in it (recursion)")
        payload = {"code": code, "variables": self._variables(variables or {})}
        with self._lock:
            self.start()
            outcome = self._request("execute", payload, "while running code", timeout=self.timeout)
            self._sync_back()
        return self._result(outcome)

    async def astart(self) -> None:
        await self._off_loop(self.start)

    async def aexecute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return await self._off_loop(self.execute, code, variables)

    async def ashutdown(self) -> None:
        await self._off_loop(self.shutdown)

    @with_callbacks
    def invoke_tool(self, tool_name: str, kwargs: dict[str, Any]) -> Any:
        if tool_name not in self.tools:
            raise CodeInterpreterError(f"unknown tool {tool_name!r}; the tools are {sorted(self.tools)}")
        result = self.tools[tool_name](**kwargs)
        if inspect.isawaitable(result):
            from .._async import run_sync

            result = run_sync(result)  # type: ignore[arg-type]
        return result

    # -- internals ---------------------------------------------------------------------------------------------
    @staticmethod
    async def _off_loop(function: Callable[..., Any], *args: Any) -> Any:
        context = contextvars.copy_context()  # dsr.context(...) settings reach tools and callbacks
        return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, lambda: context.run(function, *args))

    def _mount_table(self) -> dict[str, str]:
        mounts: dict[str, str] = {}
        for path in [*self.enable_read_paths, *self.enable_write_paths]:
            virtual = f"/sandbox/{os.path.basename(os.fspath(path))}"
            if mounts.get(virtual, _real(path)) != _real(path):
                raise CodeInterpreterError(f"two mounted files have the basename {os.path.basename(os.fspath(path))!r}")
            mounts[virtual] = _real(path)
        return mounts

    def _command(self) -> list[str]:
        if self._custom_command is not None:
            return self._custom_command
        deno = find_deno()
        version, deno_dir = _deno_info(deno)
        if not DENO_VERSIONS[0] <= version < DENO_VERSIONS[1]:
            shown = ".".join(map(str, version))
            raise CodeInterpreterError(f"Deno {shown} is not supported (2.x is): {INSTALL_HINT}")
        protected = [_real(RUNNER), *([_real(deno_dir)] if deno_dir else [])]
        for path in self.enable_write_paths:
            if any(_overlaps(_real(path), item) for item in protected):
                raise CodeInterpreterError(f"write path {os.fspath(path)!r} overlaps the interpreter's own files")
        readable = [*protected, *self._mounts.values()]
        command = [deno, "run", "--no-config", "--no-lock", "--node-modules-dir=none", "--no-prompt"]
        command.append("--allow-read=" + ",".join(readable))
        if self.enable_write_paths:
            command.append("--allow-write=" + ",".join(_real(p) for p in self.enable_write_paths))
        if self.enable_env_vars:
            command.append("--allow-env=" + ",".join(self.enable_env_vars))
        if self.enable_network_access:
            command.append("--allow-net=" + ",".join(self.enable_network_access))
        return [*command, _real(RUNNER), ",".join(self.enable_env_vars), _real(deno_dir) if deno_dir else ""]

    def _spawn(self, command: list[str]) -> None:
        for path in self.enable_write_paths:  # a write path may name a file the code is to create
            Path(path).touch(exist_ok=True)
        for virtual, real in self._mounts.items():
            if not os.path.exists(real):
                raise CodeInterpreterError(f"cannot mount {real!r} at {virtual}: no such file")
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                env=_deno_environment(),
                start_new_session=True,  # its own process group: ending the session ends what the code started
            )
        except OSError as exc:
            raise CodeInterpreterError(f"could not start {command[0]!r} ({exc}): {INSTALL_HINT}") from exc
        threading.Thread(target=self._pump_stdout, args=(self._process,), daemon=True).start()
        threading.Thread(target=self._pump_stderr, args=(self._process,), daemon=True).start()

    def _pump_stdout(self, process: subprocess.Popen[str]) -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self, process: subprocess.Popen[str]) -> None:
        # Drained continuously, so a chatty Pyodide never blocks on a full pipe; the tail explains a crash.
        for line in process.stderr:  # type: ignore[union-attr]
            self._stderr.append(line.rstrip())

    def _await_ready(self) -> None:
        message = self._receive("while starting (the first start downloads Pyodide)", STARTUP_TIMEOUT)
        if not message.get("ready"):
            self._fail(f"the sandbox did not report ready but sent {message!r}")

    def _mount_files(self) -> None:
        for virtual, real in self._mounts.items():
            self._request("mount", {"host_path": real, "virtual_path": virtual}, f"while mounting {real}")

    def _register(self) -> None:
        tools = [{"name": name, "parameters": tool_parameters(fn)} for name, fn in self.tools.items()]
        for name in self.tools:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise CodeInterpreterError(f"tool name {name!r} is not a Python identifier")
        if tools or self.output_fields:
            self._request("register", {"tools": tools, "outputs": self.output_fields}, "while registering tools")

    def _sync_back(self) -> None:
        if not self.sync_files:
            return
        for path in self.enable_write_paths:
            virtual = f"/sandbox/{os.path.basename(os.fspath(path))}"
            self._request("sync", {"host_path": _real(path), "virtual_path": virtual}, f"while writing back {path}")

    def _variables(self, variables: dict[str, Any]) -> dict[str, Any]:
        for name in variables:
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise CodeInterpreterError(f"invalid variable name {name!r}: variables must be Python identifiers")
        return {name: to_jsonable(value) for name, value in variables.items()}

    _request_ids = itertools.count(1)

    def _request(self, method: str, params: dict[str, Any], context: str, timeout: float | None = 60.0) -> Any:
        request_id = f"host-{next(PythonInterpreter._request_ids)}"
        self._send({"id": request_id, "method": method, "params": params}, context)
        while True:
            message = self._receive(context, timeout)
            if message.get("method") == "tool_call":
                self._answer_tool_call(message)
                continue
            if message.get("id") != request_id:
                self._fail(f"the sandbox answered {message.get('id')!r} to request {request_id!r} {context}")
            if "error" in message:
                error = message["error"]
                self._fail(f"the sandbox failed {context}: {error.get('type')}: {error.get('message')}")
            return message.get("result")

    def _answer_tool_call(self, message: dict[str, Any]) -> None:
        params = message.get("params") or {}
        name, kwargs = params.get("name", ""), params.get("kwargs") or {}
        token = _IN_TOOL.set(_IN_TOOL.get() | {id(self)})  # seen by the tool's own calls, sync or async
        try:
            answer: dict[str, Any] = {"result": _tool_result(self.invoke_tool(name, kwargs))}
        except Exception as exc:  # noqa: BLE001 - a failing tool is an exception in the code that called it
            answer = {"error": {"type": type(exc).__name__, "message": str(exc)}}
        finally:
            _IN_TOOL.reset(token)
        self._send({"id": message.get("id"), **answer}, "while answering a tool call")

    def _send(self, message: dict[str, Any], context: str = "") -> None:
        process = self._process
        if process is None or process.stdin is None:
            self._fail(f"the sandbox is not running {context}")
        try:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self._fail(f"the sandbox process stopped {context} ({exc})")

    def _receive(self, context: str, timeout: float | None) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self._fail(f"no answer {context} within {timeout:g} s; the sandbox was stopped")
        if line is None:
            code = self._process.wait() if self._process is not None else None
            self._fail(f"the sandbox process exited (code {code}) {context}")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            self._fail(f"the sandbox sent a line that is not JSON {context}: {line[:200]!r}")
        if not isinstance(message, dict):
            self._fail(f"the sandbox sent {message!r} {context}")
        return message

    def _result(self, outcome: dict[str, Any]) -> Any:
        if "final" in outcome:
            return FinalOutput(outcome["final"])
        error = outcome.get("error")
        if error is not None:
            if error.get("type") == "SyntaxError":
                raise SyntaxError(f"Invalid Python syntax. message: {error.get('message')}")
            raised = CodeExecutionError(self._error_text(error))
            raised.error_type, raised.traceback_text = error.get("type"), error.get("traceback", "")  # type: ignore[attr-defined]
            raise raised
        value = outcome.get("value")
        return outcome.get("stdout", "") if value is None else value

    @staticmethod
    def _error_text(error: dict[str, Any]) -> str:
        """An exception in the code, as DSPy's PythonInterpreter words it: its type and its args."""
        return f"{error.get('type')}: {error.get('args') or error.get('message')}"

    def _check_active(self) -> None:
        if self._ended:
            raise CodeInterpreterError("this PythonInterpreter's session has ended; make a new one")

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._fail(f"the sandbox process exited (code {self._process.returncode}); its state is lost")

    def _fail(self, message: str) -> NoReturn:
        """End the session (kill the process, free the slot) and raise: what failed, and Deno's last words."""
        tail = "; ".join(line for line in list(self._stderr)[-5:] if line)
        self._end()
        raise CodeInterpreterError(message + (f" (sandbox stderr: {tail})" if tail else ""))

    def _end(self) -> None:
        self._ended = True
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                process.kill()
            process.wait()
        if self._holds_slot:
            self._holds_slot = False
            SLOTS.release()

    def __repr__(self) -> str:
        state = "ended" if self._ended else "running" if self._process is not None else "not started"
        return f"PythonInterpreter({state}, tools={sorted(self.tools)})"


def _overlaps(first: str, second: str) -> bool:
    first, second = first.rstrip(os.sep), second.rstrip(os.sep)
    return first == second or first.startswith(second + os.sep) or second.startswith(first + os.sep)


def _tool_result(value: Any) -> Any:
    """What a tool returned, as the code sees it: JSON values as they are, anything else as its text."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    try:
        return to_jsonable(value)
    except CodeInterpreterError:
        return str(value)


__all__ = ["PythonInterpreter", "SandboxSlots", "find_deno"]
