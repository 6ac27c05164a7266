"""What the tasks running in one process share: one LM per spec, and the live progress sinks.

One ``TaskRegistry`` per process (``registry``). Every shard in a process shares the LM built for a spec, and
so one set of client-side limits (requests in flight, rpm, tpm). Sinks are registered by the CLI in its own
process; tasks on other machines (Dask workers) import their own, empty registry and find no sink.
``reset()`` forgets both, for tests.
"""

from __future__ import annotations

import threading
from typing import Any

import dsr_core as dsr

from .specs import LMSpec


class TaskRegistry:
    """LMs by spec and progress sinks by key, for the tasks of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lms: dict[str, dsr.LM] = {}
        self._sinks: dict[str, Any] = {}

    def lm(self, spec: LMSpec, role: str = "task") -> dsr.LM:
        """The LM for ``spec`` in ``role`` (task, prompt, judge), built on first use: one per spec and role,
        so accounts split by role even when two roles name the same model."""
        key = f"{role}:{spec.key()}"
        with self._lock:
            lm = self._lms.get(key)
            if lm is None:
                lm = self._lms[key] = spec.build(role)
            return lm

    def register_sink(self, key: str, sink: Any) -> None:
        with self._lock:
            self._sinks[key] = sink

    def unregister_sink(self, key: str) -> None:
        with self._lock:
            self._sinks.pop(key, None)

    def sink(self, key: str | None) -> Any:
        """The sink registered under ``key``, or None."""
        return self._sinks.get(key) if key else None

    def reset(self) -> None:
        """Forget every LM and sink (the next task builds its LMs again)."""
        with self._lock:
            self._lms.clear()
            self._sinks.clear()


registry = TaskRegistry()
