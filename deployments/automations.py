"""Retry crashed optimizations: the automation that makes a preempted spot instance cost only one step.

When the process running an optimize flow is killed (a spot instance reclaimed, an OOM kill), the worker
reports the flow run as Crashed; Prefect's own flow retries cannot help, because nothing of the run is left
to retry it. This automation puts that same flow run back in the Scheduled state; any worker of the pool
picks it up, and because the run keeps its flow run id (and so its checkpoint name), it resumes after its
last checkpoint. A run that crashes every time is rescheduled every time: watch for crash loops in the UI.

    python deployments/automations.py [--deployment dsr-optimize/nightly]

Automations need a Prefect server (``prefect server start``) or Prefect Cloud, not the ephemeral mode.
"""

from __future__ import annotations

import argparse

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.utilities.asyncutils import run_coro_as_sync

NAME = "dsr: retry crashed optimizations"


async def _deployment_id(name: str) -> str:
    async with get_client() as client:
        return str((await client.read_deployment_by_name(name)).id)


def retry_crashed(deployment: str = "dsr-optimize/nightly") -> Automation:
    """Create (or replace) the automation for ``deployment`` ('flow-name/deployment-name')."""
    deployment_id = run_coro_as_sync(_deployment_id(deployment))
    try:
        Automation.read(name=NAME).delete()
    except ValueError:
        pass  # none yet
    automation = Automation(
        name=NAME,
        description=f"Reschedule crashed runs of {deployment}; they resume from their checkpoints.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="AwaitingRetry",
                message="crashed (process killed?): rescheduled; it resumes from its last checkpoint",
            )
        ],
    )
    return automation.create()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployment", default="dsr-optimize/nightly")
    args = parser.parse_args()
    created = retry_crashed(args.deployment)
    print(f"automation {created.id}: {NAME} ({args.deployment})")
