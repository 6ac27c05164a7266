"""The optimizer_work task: one bootstrap or generation work item (or a shard of one).

Evaluation work goes through ``evaluate_shard`` (the evaluate flow's task); everything else an optimizer
asks for runs here through dsr_core's ``LocalRunner``. Like evaluate_shard, results are persisted as JSON
with an INPUTS + TASK_SOURCE cache policy, so a resumed optimization finds finished shards by their inputs.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from pydantic import TypeAdapter

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.cache import get_default_cache
from dsr_core.optimizers.base import LocalRunner, Work
from dsr_core.tracking import track_usage, track_usage_by_role

from .evaluate import SHARD_TASK_OPTIONS
from .program import LMInput, MetricInput, build_metric, build_program, get_lm

_WORK = TypeAdapter(Work)


@task(name="optimizer_work", cache_policy=INPUTS + TASK_SOURCE, task_run_name="{label}", **SHARD_TASK_OPTIONS)
def optimizer_work(
    program_ref: str,
    lm: LMInput,
    metric: MetricInput,
    judge_lm: LMInput | None,
    prompt_lm: LMInput | None,
    work: dict[str, Any],
    examples: list[tuple[int, dict[str, Any]]],
    input_keys: list[str],
    label: str,
    concurrency: int = 64,
    code_version: str = "",
) -> dict[str, Any]:
    """Compute ``work`` over ``examples`` (training rows as (index, example) pairs); outcomes, LM usage and
    whether any outcome failed for an infrastructure reason (such a result is computed again, not replayed).

    The runner sees only this shard's examples, renumbered 0..k-1; outcomes are renumbered back.
    ``code_version`` keys the persisted result by the program's and metric's code (see evaluate_shard).
    """
    item = _WORK.validate_python(work)
    positions = {index: position for position, (index, _) in enumerate(examples)}
    if hasattr(item, "indices"):
        item = item.model_copy(update={"indices": [positions[i] for i in item.indices]})
    trainset = [dsr.Example(example).with_inputs(*input_keys) for _, example in examples]
    runner = LocalRunner(
        build_program(program_ref, None, lm),
        trainset,
        None,
        build_metric(metric, judge_lm),
        concurrency=concurrency,
        prompt_lm=get_lm(prompt_lm or lm, "prompt"),
    )
    with track_usage() as usage, track_usage_by_role() as roles:
        outcomes = run_sync(runner.run([item]))
    get_default_cache().flush()
    original = [index for index, _ in examples]
    records = []
    for outcome in outcomes:
        record = outcome.model_dump(mode="json")
        if "index" in record:
            record["index"] = original[record["index"]]
        records.append(record)
    transient = any(getattr(outcome, "transient", False) for outcome in outcomes)
    return {
        "outcomes": records,
        "usage": usage.usage.to_dict(),
        "usage_by_role": {role: spent.to_dict() for role, spent in roles.items()},
        "transient": transient,
    }
