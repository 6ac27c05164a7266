"""Serve dsr's flows from this machine with ``flow.serve``: no work pool, no worker, one process.

    export PREFECT_API_URL=http://127.0.0.1:4200/api   # a Prefect server (schedules need one)
    python deployments/serve.py [--config deployments/configs/project.toml]

The same three deployments as prefect.yaml (evaluate on demand, nightly re-optimization, hourly drift
monitor), each reading the config file when a run starts. Runs execute in this process until it stops.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # deployments/entrypoints.py, run as a script

from entrypoints import evaluate, monitor, optimize  # noqa: E402
from prefect import serve  # noqa: E402


def deployments(config: str) -> list:
    parameters = {"config": config}
    return [
        evaluate.to_deployment(name="evaluate", parameters=parameters),
        optimize.to_deployment(name="nightly", parameters=parameters, cron="0 2 * * *"),
        monitor.to_deployment(name="hourly", parameters=parameters, cron="0 * * * *"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="deployments/configs/project.toml")
    serve(*deployments(parser.parse_args().config))
