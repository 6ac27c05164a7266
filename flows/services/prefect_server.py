"""Prefect's ephemeral API server, made to die with the dsr process (Linux).

With no ``PREFECT_API_URL``, Prefect 3 runs flows against a server it starts itself as a subprocess
(``prefect.server.api.server.SubprocessASGIServer``: ``python -m uvicorn ... prefect.server.api.server:
create_app`` on 127.0.0.1) and stops it from an ``atexit`` handler. A run killed with SIGKILL runs no atexit
handler, so the server stayed behind, every time. ``task_runner = "process"`` made it worse: each worker
process started a server of its own (another 8-22 s each), orphaned the same way.

``ephemeral_api()`` wraps the flow calls of a run. It starts the server Prefect would start (same class, same
command, same ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``, same new-port retry, same stop at exit),
but its process gets ``PR_SET_PDEATHSIG`` (SIGKILL when the dsr process dies), as ``flows.services.local_lm`` does for
the bundled model server, and ``PREFECT_API_URL`` points at it inside the block, so worker processes use it
instead of starting their own. The instance is registered where ``prefect_test_harness`` registers its server
(``SubprocessASGIServer._instances[None]``), so Prefect's events and log workers, and any flow run after the
block, use the same server. It lives as long as the process, as Prefect's does. With ``PREFECT_API_URL`` set
(a real server, or the test harness) the block changes nothing.

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, not the process, and Prefect starts
its server from whichever thread makes the first API call (a flow called from a worker thread, its events
worker). So the fork happens on one daemon thread started for it, which lives until the process ends. The
server is one process (uvicorn without ``--workers``; its task queue, docket on burner-redis, is in-process):
it has no children to leave behind. The process task runner's workers are the run's other children:
``exit_with_parent`` is the pool initializer that makes them go too.

What this keeps for the process (the spawner thread, the guarded server class) is one ``ServerGuard``,
``server_guard()``; ``registered_servers()`` shows Prefect's registry of ephemeral servers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .processes import die_with_parent


@contextlib.contextmanager
def ephemeral_api() -> Iterator[str | None]:
    """Run the enclosed flows against an ephemeral Prefect server that dies with this process.

    Yields the server's API URL, or None when ``PREFECT_API_URL`` is set already (nothing is started). Starting
    takes what Prefect's own start at the first flow call takes (8-22 s here), bounded by
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``; later blocks in the process reuse the server.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield None
        return
    from ..runtime import startup_timeout

    timeout = startup_timeout()  # also puts the embedded defaults where the server's process reads them
    server = guarded_server()
    server.start(timeout=timeout)  # a no-op once running; Prefect's retry on a taken port
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server.api_url


def guarded_server() -> Any:
    """The ``SubprocessASGIServer`` Prefect's ephemeral clients will use, registered as ours if Prefect has not
    made its own yet (then that one is returned: the guard must come before the process's first flow)."""
    return server_guard().server()


def is_guarded(server: Any) -> bool:
    """Whether ``server`` is one whose process dies with ours."""
    return server_guard().guards(server)


def registered_servers() -> dict[Any, Any]:
    """Prefect's registry of ephemeral servers (a copy): where ``guarded_server`` registers ours, under None."""
    from prefect.server.api.server import SubprocessASGIServer

    return dict(SubprocessASGIServer._instances)


class ServerGuard:
    """The spawner thread and the guarded server class: made on first use, once per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spawner: _Spawner | None = None
        self._server_class: type | None = None

    def server(self) -> Any:
        """``guarded_server()``."""
        with self._lock:
            guarded = self._guarded_class()
            # SubprocessASGIServer.__new__ registers a new instance under the None key, or returns the instance
            # registered there already (ours after the first call; Prefect's own if a flow ran unguarded).
            return guarded()

    def guards(self, server: Any) -> bool:
        return self._server_class is not None and isinstance(server, self._server_class)

    def _guarded_class(self) -> type:
        """The ``SubprocessASGIServer`` subclass whose process dies with ours (made once, after Prefect's import)."""
        if self._server_class is None:
            from prefect.server.api.server import SubprocessASGIServer

            spawn = self.spawn

            class GuardedSubprocessASGIServer(SubprocessASGIServer):
                """Prefect's ephemeral server, forked on the spawner thread with ``PR_SET_PDEATHSIG``."""

                def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
                    return spawn(lambda: _popen_like_prefect(self.port))

            self._server_class = GuardedSubprocessASGIServer
        return self._server_class

    def spawn(self, start: Callable[[], Any]) -> Any:
        """Run ``start`` (it forks a server process) on the spawner thread, started on first use."""
        with self._lock:
            if self._spawner is None:
                self._spawner = _Spawner()
            spawner = self._spawner
        return spawner.run(start)

    def reset(self) -> None:
        """Start a new spawner thread at the next fork (for tests). The old thread stays, waiting: the processes
        it forked die when it ends. The class stays too: Prefect's registry may hold servers of it."""
        with self._lock:
            self._spawner = None


_guard = ServerGuard()


def server_guard() -> ServerGuard:
    """The process's guard."""
    return _guard


def _popen_like_prefect(port: int | None) -> subprocess.Popen[Any]:
    """``SubprocessASGIServer._run_uvicorn_command`` of Prefect 3.8.8 (same command and environment), plus the
    parent-death signal. tests/test_prefect_server.py checks the command still matches Prefect's."""
    from prefect.settings import get_current_settings

    server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    return subprocess.Popen(
        args=server_command(port),
        env={
            **os.environ,
            **server_env,
            **get_current_settings().to_environment_variables(exclude_unset=True),
        },
        # SIGKILL, not SIGTERM: nothing is left to shut down gracefully for once the client is gone, and
        # uvicorn's graceful shutdown waits for open connections and background tasks. The server's sqlite
        # database survives a kill (it is journaled), as it does Prefect's own kill after a 5 s terminate.
        preexec_fn=die_with_parent(signal.SIGKILL),
    )


def server_command(port: int | None) -> list[str]:
    """The command Prefect runs for its ephemeral server."""
    import prefect

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


class _Spawner:
    """One daemon thread that starts the server processes and then waits for more work until the process
    ends: the parent-death signal follows the forking thread, so that thread must outlive the server."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="dsr-prefect-server-spawner", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            start, reply = self._requests.get()
            try:
                reply.put((True, start()))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                reply.put((False, exc))

    def run(self, start: Callable[[], Any]) -> Any:
        reply: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put((start, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value


def exit_with_parent() -> None:
    """``ProcessPoolTaskRunner(initializer=exit_with_parent)``: a worker process exits when the process that
    started it dies. Its pool's queues stay open in the other workers, so an orphaned worker otherwise waits
    for work forever (or first finishes the shard it holds, making LM calls nobody reads). A thread watches
    the parent's pid; PR_SET_PDEATHSIG cannot be used here, as the pool forks from whichever thread submits."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="dsr-exit-with-parent", daemon=True).start()
