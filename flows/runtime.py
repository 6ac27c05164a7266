"""Process setup before Prefect is imported: embedded defaults that work with nothing started by hand."""

from __future__ import annotations

import os


def prepare_prefect() -> None:
    """Give Prefect's ephemeral server time to start (the first start here took 22 s; the default is 20 s).

    With PREFECT_API_URL set, Prefect talks to that server instead and this changes nothing.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
