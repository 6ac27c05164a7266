"""Where a ``dsr`` command's log goes: a file, so the terminal shows the live display and one clear line.

Prefect logs every failure with its traceback (20-240 lines for one bad row of data) and its per-task INFO
lines would scroll over the live display. A command therefore writes the whole log (INFO and up, dsr's,
Prefect's and the libraries', with tracebacks) to ``.dsr/logs/{command}-{time}.log`` and lets only
CRITICAL records through to the terminal; on failure the CLI prints one line and the log file's name.
``--debug`` keeps everything on the terminal as well.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FOLDER = Path(".dsr") / "logs"
FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"


class _QuietTerminal(logging.Filter):
    """Drops records below CRITICAL on a terminal handler (a filter survives Prefect re-applying its
    logging config, which resets handler levels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL


def _terminal_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and not type(handler).__module__.startswith("_pytest")  # a test's log capture is not a terminal
    ]


@contextmanager
def command_log(command: str, *, debug: bool = False) -> Iterator[Path]:
    """Send this command's log to a file (yielded) and keep the terminal quiet, unless ``debug``."""
    import prefect  # noqa: F401 - Prefect sets up its logging on import; quieten its handlers after that

    LOG_FOLDER.mkdir(parents=True, exist_ok=True)
    path = (LOG_FOLDER / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log").resolve()
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    if not debug:
        for handler in _terminal_handlers():
            if not any(isinstance(f, _QuietTerminal) for f in handler.filters):
                handler.addFilter(_QuietTerminal())
    try:
        yield path
    finally:
        # the terminal stays quiet after the command: a command's process ends with it, and what Prefect logs
        # on the way out (stopping its temporary server) would only follow the summary or the error line
        root.removeHandler(file_handler)
        root.setLevel(previous_level)
        file_handler.close()
