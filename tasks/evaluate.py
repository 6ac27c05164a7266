"""The evaluate_shard task: dsr_core's async Evaluate over one shard of examples.

Per-example failures (LM, parse, metric) are rows, not task failures, so a task fails only for
infrastructure reasons, and only those are retried. Results are persisted as JSON under the run's
artifacts_url with an INPUTS + TASK_SOURCE cache policy: re-running an interrupted evaluation finds the
finished shards by their inputs and skips them. The inputs include ``code_version``, the digest of the
program's and metric's source (dsr_core.imports.code_digest), so a result is only ever found again by
the code that computed it; the flows mark replayed shards and recompute those with transient failures
(flows/shards.py).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.cache import get_default_cache

from . import progress
from .program import LMInput, MetricInput, build_metric, build_program


def is_infrastructure_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry crashes and I/O trouble, never configuration or program errors (they would fail again)."""
    try:
        state.result()
    except (dsr.DsrError, ImportError, AttributeError, TypeError, ValueError, KeyError):
        return False
    except Exception:  # noqa: BLE001 - anything else (OSError, a crashed worker) is worth a retry
        return True
    return False


# Results as JSON under the run's result storage, found again by their inputs after a crash; retried only for
# infrastructure failures. Shared by every task that computes shards of examples.
SHARD_TASK_OPTIONS: dict[str, Any] = {
    "persist_result": True,
    "result_serializer": "json",
    "retries": 2,
    "retry_delay_seconds": [1, 5],
    "retry_condition_fn": is_infrastructure_failure,
}


@task(
    name="evaluate_shard",
    cache_policy=(INPUTS - "progress_key") + TASK_SOURCE,
    task_run_name="evaluate_shard[{first_index}]",
    **SHARD_TASK_OPTIONS,
)
def evaluate_shard(
    program_ref: str,
    program_state: dict[str, Any] | None,
    lm: LMInput,
    metric: MetricInput,
    judge_lm: LMInput | None,
    examples: list[dict[str, Any]],
    input_keys: list[str],
    first_index: int,
    concurrency: int = 64,
    progress_key: str | None = None,
    indices: list[int] | None = None,
    code_version: str = "",
) -> list[dict[str, Any]]:
    """Evaluate ``examples`` (rows ``first_index``..., or rows ``indices``) and return one JSON record each.

    ``code_version`` is not used here: it is part of the inputs so that the persisted result is keyed by it.

    A synchronous task on purpose: the examples run on dsr's one event loop per process, so every shard in
    a process shares the LM's connections and limits instead of opening a pool per task.
    """
    program = build_program(program_ref, program_state, lm)
    metric_fn = build_metric(metric, judge_lm)
    devset = [dsr.Example(e).with_inputs(*input_keys) for e in examples]
    sink = progress.lookup(progress_key)
    evaluate = dsr.Evaluate(
        devset, metric_fn, concurrency=concurrency, progress=False, on_row=sink.on_row if sink is not None else None
    )
    rows = indices if indices is not None else range(first_index, first_index + len(devset))
    result = run_sync(evaluate.acall(program, indices=rows))
    get_default_cache().flush()  # a finished task's LM calls are on disk before its result is
    return result.records()
