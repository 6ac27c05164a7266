"""Embedded Prefect defaults that work with nothing started by hand, applied when a run is about to need them."""

from __future__ import annotations

import os

STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"

# Each applies only where the environment does not set it, and none touches a Prefect server started elsewhere.
EMBEDDED_DEFAULTS = {
    # the ephemeral server's first start here took 22 s; Prefect's default is 20 s
    STARTUP_TIMEOUT: "90",
    # the in-process (ephemeral) server: no telemetry (it fails without internet and logs an error), and only
    # critical messages, because it logs tracebacks when stopped while still flushing task-run events
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
}


def prepare_prefect() -> None:
    """Put ``EMBEDDED_DEFAULTS`` into the environment (what is set already wins).

    The ``dsr`` command calls it as it starts, before Prefect is imported; ``ephemeral_api`` calls it before it
    starts the temporary server, whose process reads them. With PREFECT_API_URL set nothing reads them.
    """
    for name, value in EMBEDDED_DEFAULTS.items():
        os.environ.setdefault(name, value)


def startup_timeout() -> int:
    """Seconds to wait for the ephemeral server (the environment's value, else the embedded default)."""
    prepare_prefect()
    return int(os.environ[STARTUP_TIMEOUT])
