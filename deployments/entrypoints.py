"""The flows as deployments run them (entrypoints for prefect.yaml and serve.py).

A scheduled optimization is retried when it fails, and the retry resumes from the run's last checkpoint:
a retried flow run keeps its id, and the optimize flow names an unnamed run after its flow run id. A
crashed run (its process killed, e.g. a spot instance preempted) is retried by the automation in
automations.py, which puts the same flow run back in the Scheduled state.
"""

from flows.evaluate import evaluate_flow
from flows.monitor import monitor_flow
from flows.optimize import optimize_flow

optimize = optimize_flow.with_options(retries=2, retry_delay_seconds=60)
evaluate = evaluate_flow
monitor = monitor_flow

__all__ = ["evaluate", "monitor", "optimize"]
