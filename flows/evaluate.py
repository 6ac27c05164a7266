"""The evaluate flow: shard the dev set, map evaluate_shard over the shards, aggregate, record.

``run_evaluation(config)`` picks the task runner from the config and runs the flow; the CLI and
deployments call it. The per-example table goes to ``{artifacts_url}/{run name}/evaluation.parquet``
(local folder or s3:// through fsspec), and an MLflow run gets the params (no secrets: the config holds
only env-var names), the metrics and the table.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel

import dsr_core as dsr
from dsr_core import imports
from dsr_core.evaluate import EvaluationRecord, EvaluationResult
from tasks import progress
from tasks.evaluate import evaluate_shard

from .artifacts import result_storage_for, write_table
from .budget import Budget, Spend, cost_summary, records_by_role
from .config import RunConfig, resolve_config
from .preflight import preflight
from .shards import ShardBatch, auto_shard_size, replays_allowed
from .tracking import log_evaluation


class EvaluationReport(BaseModel):
    run_name: str
    score: float
    n: int
    errors: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    lm_calls: int
    cached_calls: int = 0
    cost: float | None = None  # US dollars; None when an LM the evaluation used has no prices
    by_role: dict[str, dict[str, Any]] = {}  # task and (with an LM judge) judge: cost, tokens, lm_calls
    cached_fraction: float
    latency_p50: float
    latency_p95: float
    wall_time: float
    shards: int
    table_url: str
    mlflow_run_id: str | None = None
    replayed: int = 0  # examples whose result came back from a persisted shard (no LM call made for them)
    phase_seconds: dict[str, float] = {}
    status: str = "finished"  # or "stopped: budget": the score covers the examples evaluated before the stop
    stop_reason: str | None = None
    planned: int | None = None  # the examples the evaluation was asked for (n is how many it scored)


class EvaluationFailed(dsr.DsrError):
    """Every example failed for the same infrastructure reason: there is no score to report."""


def typed_records(batch: ShardBatch) -> list[EvaluationRecord]:
    """The records of a batch of evaluate_shard tasks (JSON dicts, as their results are persisted), typed."""
    return [EvaluationRecord.from_dict(record) for record in batch.records()]


def check_not_all_failed(result: EvaluationResult, where: str) -> None:
    """An evaluation in which every row failed for one infrastructure reason measured the endpoint, not the
    program: raise instead of reporting a score of 0 (the rows are written first, so nothing is lost)."""
    rows = result.rows
    if not rows or not all(r.transient for r in rows):
        return
    kinds = {r.error_type for r in rows}
    if len(kinds) == 1:
        first = rows[0]
        raise EvaluationFailed(
            f"every one of the {len(rows)} examples failed with {first.error_type}: {first.error} "
            f"(nothing was scored; rows in {where})"
        )


def code_version(config: RunConfig) -> str:
    """The digest of the program's and metric's code (and dsr_core's): part of every shard task's inputs."""
    return imports.code_digest(config.program.ref, config.metric.ref)


@flow(name="dsr-evaluate", validate_parameters=True)
def evaluate_flow(
    config: RunConfig | str, progress_key: str | None = None, overrides: list[str] | None = None
) -> EvaluationReport:
    """Evaluate ``config`` (a RunConfig, or a config file path as deployments pass it; ``overrides`` as --set)."""
    config = resolve_config(config, overrides)
    logger = get_run_logger()
    run_name = config.run.name or f"evaluate-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    phases: dict[str, float] = {}
    mark = time.perf_counter()
    prepared = preflight(config, "evaluate")
    devset = prepared.devset if config.data.dev else prepared.trainset
    assert devset is not None  # preflight loaded the split it checked
    workers = config.run.max_workers or 4
    size = config.run.shard_size or auto_shard_size(len(devset), workers)
    starts = list(range(0, len(devset), size))
    logger.info("evaluating %d examples in %d shards of up to %d", len(devset), len(starts), size)
    progress.notify_start(progress_key, len(devset))
    task = evaluate_shard.with_options(result_storage=result_storage_for(config.run.artifacts_url))
    input_keys = list(config.data.input_keys)
    version = code_version(config)
    started = time.perf_counter()
    phases["load"] = started - mark
    budget = Budget.of(config.run)
    # with a budget, shards go in waves of the worker count, and no wave starts that would go over a cap
    waves = [starts] if budget is None else [starts[i : i + workers] for i in range(0, len(starts), workers)]
    records: list[EvaluationRecord] = []
    spend = Spend()
    stopped: str | None = None
    for wave in waves:
        units = {"task": sum(len(devset[s : s + size]) for s in wave)}
        if budget is not None and (stopped := budget.exceeded_by(spend, units)) is not None:
            logger.info("stopping the evaluation after %d examples: %s", len(records), stopped)
            break
        wave_started = time.perf_counter()
        shards = ShardBatch(task, "records", replay=replays_allowed(config))
        for s in wave:
            shards.submit(
                config.program.ref,
                prepared.program_state,
                config.lm,
                config.metric,
                config.judge_lm,
                [e.to_dict() for e in devset[s : s + size]],
                input_keys,
                s,
                concurrency=min(config.lm.max_concurrency, size),
                progress_key=progress_key,
                code_version=version,
            )
        done = typed_records(shards)
        records.extend(done)
        judge_prices = config.judge_lm.prices() if config.judge_lm else None
        spend.add_step(records_by_role(done, judge_prices), units, time.perf_counter() - wave_started)
    wall = time.perf_counter() - started
    result = EvaluationResult.from_records(sorted(records, key=lambda r: r.index), wall_time=wall)
    phases["shards"] = wall
    mark = time.perf_counter()
    table = result.to_arrow()
    table_url = write_table(table, config.run.artifacts_url, run_name, "evaluation.parquet")
    phases["table"] = time.perf_counter() - mark
    check_not_all_failed(result, table_url)
    mark = time.perf_counter()
    summary = result.summary()
    run_id = log_evaluation(config, run_name, summary, table_url, table)
    phases["mlflow"] = time.perf_counter() - mark
    replayed = sum(r.replayed for r in result.rows)
    logger.info(
        "score %.2f on %d examples (%d errors, %d replayed from persisted results); table at %s",
        result.score,
        result.n,
        result.errors,
        replayed,
        table_url,
    )
    return EvaluationReport(
        run_name=run_name,
        score=result.score,
        n=result.n,
        errors=result.errors,
        error_rate=result.error_rate,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        lm_calls=result.usage.lm_calls,
        cached_calls=result.usage.cached_calls,
        cost=summary["cost"],
        cached_fraction=result.cached_fraction,
        latency_p50=summary["latency_p50"],
        latency_p95=summary["latency_p95"],
        wall_time=wall,
        shards=len(starts),
        table_url=table_url,
        mlflow_run_id=run_id,
        replayed=replayed,
        phase_seconds=phases,
        by_role=cost_summary(spend)["by_role"],
        status="finished" if stopped is None else "stopped: budget",
        stop_reason=stopped,
        planned=len(devset),
    )


def task_runner_for(config: RunConfig) -> Any:
    kind = config.run.task_runner
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.run.max_workers or 4)
    if kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        from .services.prefect_server import exit_with_parent

        # workers that outlive a killed parent would wait for work forever
        return ProcessPoolTaskRunner(max_workers=config.run.max_workers or 2, initializer=exit_with_parent)
    from prefect_dask import DaskTaskRunner

    if config.run.dask_address:
        return DaskTaskRunner(address=config.run.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": config.run.max_workers or 2, "threads_per_worker": 1})


def run_evaluation(config: RunConfig, progress_key: str | None = None) -> EvaluationReport:
    """Run the evaluate flow with the task runner the config asks for (and the bundled model, if asked for)."""
    from .services.local_lm import serve_local_models
    from .services.prefect_server import ephemeral_api

    with serve_local_models(config) as config:
        preflight(config, "evaluate")  # before Prefect starts: a run that cannot succeed stops in a second or two
        # no PREFECT_API_URL: a server that dies with this process (flows.services.prefect_server)
        with ephemeral_api():
            return evaluate_flow.with_options(task_runner=task_runner_for(config))(config, progress_key=progress_key)
