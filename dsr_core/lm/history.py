"""The call history: every call in the global history (the runtime's), the LM's and its calling modules',
and ``inspect_history``, which prints the last calls as DSPy's does."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .. import settings as _settings
from ..runtime import runtime
from ..tracking import current_callers

if TYPE_CHECKING:
    from .base import BaseLM

# the runtime's history: one deque for the process, cleared by ``runtime().reset()``, never replaced
GLOBAL_HISTORY: deque[dict[str, Any]] = runtime().history


def record_history(lm: Any, entry: dict[str, Any]) -> None:
    """Record one call in the global history, the LM's and every calling module's, unless
    ``settings.disable_history``. Module histories keep at most ``settings.max_history_size`` entries."""
    if _settings.get("disable_history"):
        return
    GLOBAL_HISTORY.append(entry)  # deque.append is atomic: no lock
    lm.history.append(entry)
    callers = current_callers.get()
    if callers:
        limit = _settings.get("max_history_size")
        if not limit:
            return
        for module in callers:
            history = module.__dict__.get("history")
            if history is None:
                history = module.__dict__["history"] = []
            if len(history) >= limit:
                del history[: len(history) - limit + 1]
            history.append(entry)


def format_history(entries: list[dict[str, Any]]) -> str:
    """The text ``inspect_history`` prints for these history entries."""
    blocks = []
    for entry in entries:
        lines = [
            f"[{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(entry['timestamp']))}] "
            f"{entry['model']}{' (cached)' if entry.get('cached') else ''}"
        ]
        for message in entry["messages"] or []:
            lines.append(f"{message['role'].capitalize()} message:\n\n{message['content']}\n")
        for i, text in enumerate(entry["outputs"]):
            lines.append(f"Response{f' {i + 1}' if len(entry['outputs']) > 1 else ''}:\n\n{text}\n")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def inspect_history(n: int = 1, lm: BaseLM | None = None) -> str:
    """Print (and return) the last ``n`` calls: messages and replies, DSPy's ``inspect_history``."""
    text = format_history(list(lm.history if lm is not None else GLOBAL_HISTORY)[-n:])
    print(text)  # noqa: T201 - this function exists to print
    return text
