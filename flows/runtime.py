"""Process setup before Prefect is imported: embedded defaults that work with nothing started by hand."""

from __future__ import annotations

import os


def prepare_prefect() -> None:
    """Give Prefect's ephemeral server time to start (the first start here took 22 s; the default is 20 s).

    With PREFECT_API_URL set, Prefect talks to that server instead and this changes nothing.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # The in-process (ephemeral) server: no telemetry (it fails without internet and logs an error), and
    # only critical messages, because it logs tracebacks when stopped while still flushing task-run events.
    # Neither setting touches a real Prefect server started elsewhere.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
