"""Prefect flows and the ``dsr`` CLI.

Importing this package gives Prefect's ephemeral server a longer startup timeout (see flows.runtime)
before Prefect itself is imported, so ``run_evaluation`` from a script works on embedded defaults too.
"""

from .runtime import prepare_prefect

prepare_prefect()
