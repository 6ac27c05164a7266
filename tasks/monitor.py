"""The judge_shard task: score logged (inputs, outputs) pairs with the judge metric, without re-running the program."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import task

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.evaluate import _as_score

from .evaluate import is_infrastructure_failure
from .program import LMInput, MetricInput, build_metric


@task(name="judge_shard", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_infrastructure_failure)
def judge_shard(
    records: list[dict[str, Any]], metric: MetricInput, judge_lm: LMInput | None, concurrency: int = 16
) -> list[float | None]:
    """One score in 0..1 per record, or None where judging failed (a failure is not a low score)."""
    judge = build_metric(metric, judge_lm)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(record: dict[str, Any]) -> float | None:
        example = dsr.Example(record["inputs"]).with_inputs(*record["inputs"])
        prediction = dsr.Prediction(**record["outputs"])
        async with semaphore:
            try:
                value = judge(example, prediction)
                return _as_score(await value if asyncio.iscoroutine(value) else value)
            except Exception:  # noqa: BLE001 - counted as unjudged by the flow
                return None

    async def all_records() -> list[float | None]:
        return list(await asyncio.gather(*(one(r) for r in records)))

    return run_sync(all_records())
