"""The optimize flow: drive an optimizer's ask/tell machine with Prefect tasks, checkpoint after every step.

One step = ``ask`` -> tasks over shards -> ``tell`` -> checkpoint -> MLflow. Evaluation work runs as the
evaluate flow's ``evaluate_shard`` tasks, everything else (bootstrap, proposals) as ``optimizer_work``
tasks; shards of one work item are merged before ``tell``, so the optimizer never sees how work was split.

A run is identified by its name under ``[run] checkpoint_url``. Starting a run whose name has a checkpoint
resumes it (after checking that the optimizer, the program's shape, the data and the result-relevant
config are the ones it was started with); a finished run is reported, not redone. Finished shards of an
interrupted step come back from Prefect's persisted results and LM calls from the LM cache, so a resumed
run pays for nothing twice and ends with the same program and score as an uninterrupted one.

The end: the baseline (the program as configured) and the optimized program are evaluated on the
validation set (the training set when there is none), the program JSON is saved next to the checkpoints,
and with ``[mlflow] register_as`` it becomes a model version: alias ``candidate`` always, ``champion``
only if it beats the current champion on the same examples.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel

import dsr_core as dsr
from dsr_core import imports
from dsr_core.costs import Prices, known_cost
from dsr_core.evaluate import EvaluationRecord, EvaluationResult, records_usage
from dsr_core.optimizers.base import (
    BootstrapOutcome,
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    GraphOutcome,
    GraphWork,
    Optimizer,
    OptimizerState,
    TraceOutcome,
)
from dsr_core.state import ProgramState, dump_program_state
from tasks import progress
from tasks.evaluate import evaluate_shard
from tasks.optimize import optimizer_work
from tasks.program import get_lm, instantiate, with_state

from .artifacts import open_file, result_storage_for
from .budget import Budget, Spend, account, cost_summary, records_by_role, work_units
from .checkpoint import CheckpointError, CheckpointStore
from .config import RunConfig, optimizer_class, resolve_config
from .evaluate import EvaluationFailed, check_not_all_failed, code_version, task_runner_for, typed_records
from .lineage import lineage_rows
from .preflight import preflight
from .shards import ShardBatch, auto_shard_size, replays_allowed

# the outcome model of each work kind that optimizer_work computes
OUTCOMES: dict[str, type[BaseModel]] = {
    "bootstrap": BootstrapOutcome,
    "generate": GenerateOutcome,
    "trace": TraceOutcome,
    "graph": GraphOutcome,
}


MIN_SHARD = 20  # examples per task unless run.shard_size says otherwise


class OptimizationReport(BaseModel):
    run_name: str
    optimizer: str
    status: str = "finished"  # or "stopped: budget" (see stop_reason; running it again continues)
    stop_reason: str | None = None
    resumed: bool = False
    already_finished: bool = False
    steps: int
    trials: int
    best_score: float | None  # the optimizer's own best (on its selection split)
    eval_split: str
    eval_examples: int
    baseline_score: float
    optimized_score: float
    lm_calls: int
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None = None  # US dollars; None when an LM the run used has no prices
    by_role: dict[str, dict[str, Any]] = {}  # per LM role (task, prompt, judge): cost, tokens, lm_calls
    by_phase: dict[str, dict[str, Any]] = {}  # per optimizer phase and the final evaluation: steps, calls, ...
    candidates: list[dict[str, Any]] = []  # GEPA, SIMBA, Structural: every candidate (flows/lineage.py)
    estimated_lm_calls: int | None = None  # what `dsr optimize --estimate` predicted for this run, if it was asked
    estimated_cost: float | None = None
    estimated_tokens: int | None = None
    estimated_seconds: float | None = None
    estimated_phases: list[dict[str, Any]] = []  # the estimate's rows by phase (flows/estimate.py)
    wall_time: float
    checkpoint_url: str
    program_url: str
    mlflow_run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    champion_version: str | None = None
    champion_score: float | None = None  # the previous champion's score on the same examples
    champion_error: str | None = None  # why the previous champion could not be scored, if it could not
    promoted: bool = False


# -- identity of a run -----------------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(
    config: RunConfig, student: dsr.Module, trainset: list[dsr.Example], valset: list[dsr.Example] | None
) -> dict[str, str]:
    """What a checkpoint must match to be resumed: each part hashed separately so a mismatch can be named."""
    lms = {
        name: section.result_params() if section is not None else None
        for name, section in (
            ("lm", config.lm),
            ("prompt_lm", config.prompt_lm),
            ("reflection_lm", config.reflection_lm),
            ("judge_lm", config.judge_lm),
        )
    }
    return {
        "optimizer": config.optimizer.name,
        "optimizer_params": _digest({"seed": config.optimizer.seed, **config.optimizer.params}),
        "program": config.program.ref,
        "program_shape": _digest({name: p.signature.shape_hash for name, p in student.named_predictors()}),
        # without the metadata: it names the dsr and Python versions, which may differ on the resuming machine
        "program_state": _digest(ProgramState.from_json(student.dump_state()).predictors()),
        "data": _digest([[e.to_dict() for e in trainset], [e.to_dict() for e in valset or []]]),
        "metric": _digest(config.metric.model_dump()),
        "lms": _digest(lms),
        # the user's program and metric source (and the user modules they import): a run is not continued
        # by other code; dsr's own version may differ on the resuming machine, as with the metadata above
        "code": imports.code_digest(config.program.ref, config.metric.ref, include_dsr=False),
    }


def check_compatible(checkpoint: dict[str, Any], expected: dict[str, str], where: str) -> None:
    saved = checkpoint.get("fingerprint") or {}
    # a part that an older checkpoint did not record cannot be compared, and is not held against it
    differences = [key for key in expected if key in saved and saved[key] != expected[key]]
    if differences:
        raise CheckpointError(
            f"{where}: this run name belongs to an incompatible run (different {', '.join(differences)}"
            f"{'; optimizer ' + repr(saved.get('optimizer')) if 'optimizer' in differences else ''}). "
            "Refusing to resume or overwrite it: choose another run.name, or move the folder away."
        )


def build_optimizer(config: RunConfig) -> Optimizer:
    return optimizer_class(config.optimizer.name)(seed=config.optimizer.seed, **config.optimizer.params)


def _without_lm(program_state: dict[str, Any]) -> dict[str, Any]:
    """Program state for a task: the task attaches the run's LM, shared per process (no per-shard client)."""
    state = ProgramState.from_json(program_state)
    entries = {
        name: {**entry, "lm": None} if isinstance(entry, dict) else entry for name, entry in state.predictors().items()
    }
    return state.with_entries(entries).to_json()


# -- running work ----------------------------------------------------------------------------------------------


class StepRunner:
    """Submits one step's work as tasks over shards and merges the shards' outcomes."""

    def __init__(
        self, config: RunConfig, trainset: list[dsr.Example], valset: list[dsr.Example] | None, key: str | None
    ) -> None:
        self.config = config
        self.splits = {"train": trainset, "val": valset or []}
        self.progress_key = key
        storage = result_storage_for(config.run.artifacts_url)
        self.evaluate_task = evaluate_shard.with_options(result_storage=storage)
        self.work_task = optimizer_work.with_options(result_storage=storage)
        self.replay = replays_allowed(config)
        self.code_version = code_version(config)
        self.lm = config.lm
        self.judge = config.judge_lm
        self.judge_prices = config.judge_lm.prices() if config.judge_lm else None
        # GEPA reflects with [reflection_lm], then [prompt_lm], then [lm]; the other optimizers propose with [prompt_lm]
        reflection = config.reflection_lm if config.optimizer.name == "GEPA" else None
        self.prompt_lm = reflection or config.prompt_lm
        self.metric = config.metric
        self.input_keys = list(config.data.input_keys)

    def _shards(self, indices: list[int]) -> list[list[int]]:
        workers = self.config.run.max_workers or 4
        # optimizer steps are many small evaluations: keep shards big enough that task overhead stays noise
        size = self.config.run.shard_size or max(MIN_SHARD, auto_shard_size(len(indices), workers))
        return [indices[i : i + size] for i in range(0, len(indices), size)] or [[]]

    def evaluate(self, program_state: dict[str, Any], split: str, indices: list[int]) -> ShardBatch:
        """Submit evaluate_shard tasks for ``indices`` of ``split``; ``records()`` of the batch waits for them."""
        examples = self.splits[split]
        state = _without_lm(program_state)
        batch = ShardBatch(self.evaluate_task, "records", replay=self.replay)
        for shard in self._shards(indices):
            batch.submit(
                self.config.program.ref,
                state,
                self.lm,
                self.metric,
                self.judge,
                [examples[i].to_dict() for i in shard],
                self.input_keys,
                shard[0] if shard else 0,
                concurrency=min(self.config.lm.max_concurrency, max(1, len(shard))),
                progress_key=self.progress_key,
                indices=shard,
                code_version=self.code_version,
            )
        return batch

    def run(self, work: list[Any]) -> tuple[list[Any], list[StepEvaluation], dict[str, dsr.Usage]]:
        """Compute a step's work. Returns (outcomes for tell, evaluation summaries, LM usage by role).

        Evaluations are the task LM's spend (with an LM judge's calls, when the metric is one); the other work
        reports its usage per LM role (task, prompt, judge) from where the calls were made."""
        evaluations: list[tuple[EvaluateWork, ShardBatch]] = []
        others = ShardBatch(self.work_task, "work", replay=self.replay)
        kinds: list[str] = []
        for item in work:
            if isinstance(item, EvaluateWork):
                evaluations.append((item, self.evaluate(item.program, item.split, item.indices)))
                continue
            payload = item.model_dump(mode="json")
            # a graph is traced once, on all of its examples; other work with examples is split into shards
            if isinstance(item, GraphWork):
                shards = [item.indices]
            else:
                shards = self._shards(item.indices) if hasattr(item, "indices") else [[]]
            for n, shard in enumerate(shards):
                part = {**payload, "indices": shard} if hasattr(item, "indices") else payload
                examples = [(i, self.splits["train"][i].to_dict()) for i in shard]
                label = f"{item.kind}[{item.key if isinstance(item, GenerateWork) else n}]"
                others.submit(
                    self.config.program.ref,
                    self.lm,
                    self.metric,
                    self.judge,
                    self.prompt_lm,
                    part,
                    examples,
                    self.input_keys,
                    label,
                    concurrency=self.config.run.concurrency,
                    code_version=self.code_version,
                )
                kinds.append(item.kind)
        roles: dict[str, dsr.Usage] = {}
        outcomes: list[Any] = []
        summaries: list[StepEvaluation] = []
        for item, batch in evaluations:
            records = sorted(typed_records(batch), key=lambda r: r.index)
            spent = records_usage(records)
            for role, usage in records_by_role(records, self.judge_prices).items():
                add_usage(roles, role, usage)
            outcome = EvaluateOutcome(
                candidate=item.candidate,
                split=item.split,
                indices=[r.index for r in records],
                scores=[r.score for r in records],
                errors=sum(r.error_type is not None for r in records),
                lm_calls=spent.lm_calls,
                prompt_tokens=spent.prompt_tokens,
                completion_tokens=spent.completion_tokens,
            )
            outcomes.append(outcome)
            summaries.append(StepEvaluation(item, outcome, records))
        check_step_not_all_failed([r for summary in summaries for r in summary.records])
        worked: list[Any] = []
        for kind, result in zip(kinds, others.results() if kinds else [], strict=True):
            by_role = result.get("usage_by_role") or {"prompt" if kind == "generate" else "task": result["usage"]}
            for role, spent in by_role.items():
                add_usage(roles, role, dsr.Usage.from_dict(spent))
            worked.extend(OUTCOMES[kind].model_validate(o) for o in result["outcomes"])
        check_work_not_all_failed(worked)
        return outcomes + worked, summaries, roles


@dataclass
class StepEvaluation:
    """One evaluation of a step: the work asked for, the outcome told to the optimizer, and its records."""

    work: EvaluateWork
    outcome: EvaluateOutcome
    records: list[EvaluationRecord]


def add_usage(roles: dict[str, dsr.Usage], role: str, usage: dsr.Usage) -> None:
    roles.setdefault(role, dsr.Usage()).add(usage)


def check_step_not_all_failed(records: list[EvaluationRecord]) -> None:
    """A step whose every evaluated example failed for one infrastructure reason (the endpoint went down)
    would score every candidate 0: stop before ``tell``, so the checkpoint keeps the last good step and a
    resume, once the endpoint is back, computes this step again (transient rows are never replayed)."""
    check_not_all_failed(EvaluationResult.from_records(records), "this step's evaluations")


def check_work_not_all_failed(outcomes: list[Any]) -> None:
    """The same rule for a step's bootstraps and generations: when every one of them failed for an
    infrastructure reason, nothing was learned about the program, so the step stops before ``tell``."""
    failed = [o for o in outcomes if getattr(o, "transient", False)]
    if failed and len(failed) == len(outcomes) and len({(o.error or "").split(":")[0] for o in failed}) == 1:
        raise EvaluationFailed(
            f"every one of the {len(failed)} optimizer calls of this step failed: {failed[0].error} "
            "(nothing was learned; the checkpoint keeps the last good step)"
        )


# -- trial records ---------------------------------------------------------------------------------------------


def describe_program(program_state: dict[str, Any]) -> dict[str, Any]:
    """Per predictor: number of demos and the instruction (what a candidate changed)."""
    return {
        name: {"demos": len(entry.get("demos", [])), "instructions": entry["signature"]["instructions"]}
        for name, entry in ProgramState.from_json(program_state).predictors().items()
        if isinstance(entry, dict)
    }


def trial_records(
    summaries: list[StepEvaluation],
    state: OptimizerState,
    start: int,
    step: int,
    seconds: float,
    judge_prices: Prices | None = None,
) -> list[dict[str, Any]]:
    """One record per evaluation of the step, with its own accounts: LM calls and tokens, and its cost (exact:
    the trials' costs add up to what the run spent on them; None when unknown), in all and by LM role."""
    records = []
    for offset, summary in enumerate(summaries):
        work, outcome, rows = summary.work, summary.outcome, summary.records
        own = state.trial(work.candidate)  # the optimizer's own record of the trial, when it keeps one
        full = len(work.indices) >= (state.n_val if work.split == "val" else state.n_train)
        choice = own.params if own is not None and own.params else describe_program(work.program)
        by_role = records_by_role(rows, judge_prices)
        usage = records_usage(rows)
        records.append(
            {
                "trial": start + offset + 1,
                "step": step,
                "candidate": work.candidate,
                "kind": own.kind if own is not None else ("full" if full else "minibatch"),
                "split": work.split,
                "examples": len(outcome.scores),
                "score": round(100.0 * outcome.mean, 4),
                "errors": outcome.errors,
                "best_so_far": state.best_score,
                "lm_calls": usage.lm_calls,
                "cached_calls": usage.cached_calls,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cost": account(usage, exact=True)["cost"],
                "by_role": {role: account(spent, exact=True) for role, spent in sorted(by_role.items())},
                "seconds": round(seconds, 3),
                # seconds per example (program and metric), the mean over the rows; kept here, not in the
                # optimizer's state, which must come out the same on every run
                "latency": round(sum(r.latency for r in rows) / len(rows), 4) if rows else None,
                "choice": json.dumps(choice, sort_keys=True),
            }
        )
    return records


# -- the flow ----------------------------------------------------------------------------------------------------


FINISHED = "finished"
FINAL_EVALUATION = "final evaluation"  # the baseline and the result scored at the end (a phase of the accounts)
STOPPED = "stopped: budget"  # a run its budget stopped at a step boundary; running it again continues it


def _caps(config: RunConfig) -> str:
    caps = {k: getattr(config.run, k) for k in ("max_cost", "max_lm_calls", "max_tokens", "max_wall_time")}
    return ", ".join(f"{k} = {v:g}" for k, v in caps.items() if v is not None) or "no caps"


def run_name_for(config: RunConfig, flow_run_id: Any) -> str:
    """``run.name``, or one derived from the Prefect flow run: stable when Prefect retries the flow run (so the
    retry resumes the checkpoint), new for every scheduled run (so each night optimizes afresh)."""
    return config.run.name or f"optimize-{config.optimizer.name.lower()}-{str(flow_run_id)[:8]}"


def _mark_mlflow_run_failed(flow: Any, flow_run: Any, state: Any) -> None:
    """A failed or crashed flow leaves its MLflow parent run FAILED, not RUNNING (a resume reopens it)."""
    from .tracking import client_for

    try:
        config = resolve_config(flow_run.parameters["config"], flow_run.parameters.get("overrides"))
        checkpoint = CheckpointStore(config.run.checkpoint_url, run_name_for(config, flow_run.id)).read_latest(
            repair=False
        )
        if checkpoint and checkpoint.get("mlflow_run_id"):
            client_for(config).set_terminated(checkpoint["mlflow_run_id"], status="FAILED")
    except Exception:  # noqa: BLE001 - bookkeeping after a failure must not hide the failure itself
        get_run_logger().warning("could not mark the MLflow run of %s failed", flow_run.name, exc_info=True)


@dataclass
class Run:
    """What an optimization carries from step to step. ``save`` writes it as the next checkpoint."""

    config: RunConfig
    name: str
    store: CheckpointStore
    fingerprint: dict[str, str]
    state: OptimizerState
    mlflow_run_id: str
    step: int = 0
    trials: list[dict[str, Any]] = field(default_factory=list)
    spend: Spend = field(default_factory=Spend)
    resumed: bool = False

    @property
    def usage(self) -> dsr.Usage:
        """Everything the run's LM calls spent, all roles together."""
        return self.spend.total

    def save(self, status: str, report: dict[str, Any] | None = None) -> None:
        self.store.write(
            self.step,
            {
                "run_name": self.name,
                "optimizer": self.config.optimizer.name,
                "status": status,
                "fingerprint": self.fingerprint,
                "state": self.state.model_dump(mode="json"),
                "trials": self.trials,
                "usage": dict(vars(self.usage)),
                "spend": self.spend.to_json(),
                "mlflow_run_id": self.mlflow_run_id,
                "updated_at": time.time(),
                "report": report,
            },
        )

    def progress(self, planned: int | None, phase: str | None = None) -> dict[str, Any]:
        return {
            "phase": phase or self.state.current_phase,
            "trials": len(self.trials),
            "planned_trials": planned,
            "best_score": self.state.best_score,
            "lm_calls": self.usage.lm_calls,
            "cached_calls": self.usage.cached_calls,
            "tokens": self.usage.total_tokens,
            "cost": known_cost(self.usage),
        }


def _open_run(
    config: RunConfig, name: str, fresh: OptimizerState, expected: dict[str, str]
) -> Run | OptimizationReport:
    """A new run (checkpointed at step 0), the unfinished run of that name, or the report of a finished one."""
    from . import tracking

    logger = get_run_logger()
    store = CheckpointStore(config.run.checkpoint_url, name)
    checkpoint = store.read_latest()
    if checkpoint is None:
        run = Run(config, name, store, expected, fresh, tracking.start_optimization(config, name, expected))
        run.save("running")  # the run and its MLflow parent are on record before any work is paid for
        return run
    check_compatible(checkpoint, expected, store.url)
    if checkpoint.get("status") == FINISHED:
        logger.info("run %s already finished; reporting it (start a new run.name to optimize again)", name)
        return OptimizationReport.model_validate({**checkpoint["report"], "already_finished": True})
    try:
        state = type(fresh).model_validate(checkpoint["state"])
    except Exception as exc:  # noqa: BLE001 - any validation failure means the state is unusable
        raise CheckpointError(f"{store.url}: the optimizer state does not load ({exc})") from None
    run_id = checkpoint.get("mlflow_run_id") or tracking.start_optimization(config, name, expected)
    run = Run(config, name, store, expected, state, run_id, step=int(checkpoint["step"]), resumed=True)
    run.trials = list(checkpoint.get("trials", []))
    run.spend = Spend.from_json(checkpoint.get("spend"), checkpoint.get("usage"))
    if checkpoint.get("status") == STOPPED:
        logger.info("run %s stopped at its budget before; continuing with %s", name, _caps(config))
    tracking.resume_optimization(config, run_id, run.trials)
    logger.info("resuming %s at step %d (%d trials done) from %s", name, run.step, len(run.trials), store.url)
    return run


@flow(
    name="dsr-optimize",
    validate_parameters=True,
    on_failure=[_mark_mlflow_run_failed],
    on_crashed=[_mark_mlflow_run_failed],
)
def optimize_flow(
    config: RunConfig | str, progress_key: str | None = None, overrides: list[str] | None = None
) -> OptimizationReport:
    """Optimize ``config`` (a RunConfig, or a config file path as deployments pass it; ``overrides`` as --set)."""
    from prefect.runtime import flow_run

    from . import tracking

    config = resolve_config(config, overrides)
    logger = get_run_logger()
    started = time.perf_counter()
    prepared = preflight(config, "optimize")
    trainset = prepared.trainset or []
    valset = prepared.devset
    student = instantiate(config.program.ref, prepared.program_state)
    optimizer = build_optimizer(config)
    fresh = optimizer.init_state(student, trainset, valset)
    opened = _open_run(config, run_name_for(config, flow_run.id), fresh, fingerprint(config, student, trainset, valset))
    if isinstance(opened, OptimizationReport):
        return opened
    run = opened

    runner = StepRunner(config, trainset, valset, progress_key)
    trial_log = tracking.TrialLog(config, run.mlflow_run_id)
    planned = optimizer.planned_trials(run.state)
    progress.notify_step(progress_key, run.progress(planned))
    budget = Budget.of(config.run)
    stopped: str | None = None
    while not run.state.done:
        before = run.state.model_copy(deep=True)  # what a stop keeps: the state the last step left
        phase = run.state.current_phase
        work = optimizer.ask(run.state)
        units = work_units(work)
        if budget is not None and (stopped := budget.exceeded_by(run.spend, units)) is not None:
            run.state = before
            logger.info("stopping %s at step %d before it goes over its budget: %s", run.name, run.step, stopped)
            break
        mark = time.perf_counter()
        outcomes, summaries, step_usage = runner.run(work)
        with dsr.context(max_errors=None):  # a failed attempt is not a demo; only [optimizer] max_errors stops a run
            run.state = optimizer.tell(run.state, outcomes)
        run.step += 1
        run.spend.add_step(step_usage, units, time.perf_counter() - mark, phase=phase)
        new = trial_records(
            summaries, run.state, len(run.trials), run.step, time.perf_counter() - mark, runner.judge_prices
        )
        run.trials.extend(new)
        run.save("running")
        trial_log.submit(new)
        trial_log.submit_step(run.step, run.state)
        progress.notify_step(progress_key, run.progress(planned))
        state = run.state
        logger.info("step %d: %s; %d trials, best %s", run.step, state.current_phase, len(run.trials), state.best_score)

    trial_log.close()
    tracking.log_missing_trials(config, run.mlflow_run_id, run.trials)
    progress.notify_step(progress_key, run.progress(planned, FINAL_EVALUATION))
    result = run.state.result if stopped is None else optimizer.best_so_far(run.state)
    report, program_state = _finish(
        run, student, runner, valset or trainset, "val" if valset else "train", result or student.dump_state()
    )
    report["wall_time"] = round(time.perf_counter() - started, 3)
    if stopped is not None:
        report.update(status=STOPPED, stop_reason=stopped)
    tracking.finish_optimization(
        config, run.mlflow_run_id, report, run.trials, program_state, state=run.state, baseline=student.dump_state()
    )
    run.save(STOPPED if stopped is not None else FINISHED, report)
    progress.notify_step(progress_key, run.progress(planned, "stopped: budget" if stopped is not None else "done"))
    logger.info(
        "%s: baseline %.2f -> optimized %.2f on %d %s examples; program at %s",
        run.name,
        report["baseline_score"],
        report["optimized_score"],
        report["eval_examples"],
        report["eval_split"],
        report["program_url"],
    )
    return OptimizationReport.model_validate(report)


def estimated(config: RunConfig, name: str) -> dict[str, Any]:
    """The estimate made for this run before it started (``dsr optimize --estimate``), to show beside the
    actual numbers; nothing when there was none."""
    from .estimate import read_estimate

    found = read_estimate(config.run.checkpoint_url, name)
    if not found:
        return {}
    total = found["total"]
    return {
        "estimated_lm_calls": total["lm_calls"],
        "estimated_cost": total["cost"],
        "estimated_tokens": total.get("tokens"),  # an estimate kept before these were carried has only the two
        "estimated_seconds": total.get("seconds"),
        "estimated_phases": found.get("rows", []),
    }


def _finish(
    run: Run, student: dsr.Module, runner: StepRunner, examples: list[Any], split: str, result: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score the baseline and ``result`` (the optimizer's, or its best so far when a budget stopped the run)
    on the same examples, save the program, register it. Returns the report (without wall time) and the
    program state."""
    from .services import registry

    config = run.config
    started = time.perf_counter()
    indices = list(range(len(examples)))
    optimized = with_state(student, result, source=f"the result of {run.name}")
    batches = {
        "baseline": runner.evaluate(student.dump_state(), split, indices),
        "optimized": runner.evaluate(optimized.dump_state(), split, indices),
    }
    records: dict[str, list[EvaluationRecord]] = {}
    for name, batch in batches.items():  # a dead endpoint is an error, not a score of 0
        records[name] = typed_records(batch)
        check_not_all_failed(
            EvaluationResult.from_records(records[name]), f"the final evaluation of the {name} program"
        )
    scores = {name: _mean_score(rows) for name, rows in records.items()}
    final: dict[str, dsr.Usage] = {}  # the report's LM totals include these two evaluations
    for rows in records.values():
        for role, usage in records_by_role(rows, runner.judge_prices).items():
            add_usage(final, role, usage)
    run.spend.add_step(final, {}, time.perf_counter() - started, phase=FINAL_EVALUATION)
    lm = get_lm(config.lm)
    for predictor in optimized.predictors():
        predictor.lm = predictor.lm or lm  # the saved program carries its LM settings (never the key)
    program_state = dump_program_state(optimized)
    program_url = run.store.url.rstrip("/") + "/program.json"
    with open_file(program_url, "w") as handle:
        json.dump(program_state, handle, indent=2, ensure_ascii=False)
    report: dict[str, Any] = {
        "run_name": run.name,
        "optimizer": config.optimizer.name,
        "resumed": run.resumed,
        "steps": run.step,
        "trials": len(run.trials),
        "best_score": run.state.best_score,
        "eval_split": split,
        "eval_examples": len(examples),
        "baseline_score": scores["baseline"],
        "optimized_score": scores["optimized"],
        "lm_calls": run.usage.lm_calls,
        "cached_calls": run.usage.cached_calls,
        "prompt_tokens": run.usage.prompt_tokens,
        "completion_tokens": run.usage.completion_tokens,
        **cost_summary(run.spend),
        **estimated(config, run.name),
        "candidates": lineage_rows(run.state, run.trials) or [],
        "wall_time": 0.0,
        "checkpoint_url": run.store.url,
        "program_url": program_url,
        "mlflow_run_id": run.mlflow_run_id,
    }
    if config.mlflow.register_as:
        report.update(
            registry.register(
                config,
                run.mlflow_run_id,
                program_state,
                scores["optimized"],
                champion_score=lambda champion: _mean_score(typed_records(runner.evaluate(champion, split, indices))),
            )
        )
    return report, program_state


def _mean_score(records: list[EvaluationRecord]) -> float:
    scores = [r.score for r in records]
    return round(100.0 * sum(scores) / len(scores), 4) if scores else 0.0


def run_optimization(config: RunConfig, progress_key: str | None = None) -> OptimizationReport:
    """Run the optimize flow with the task runner the config asks for (and the bundled model, if asked for)."""
    from .services.local_lm import serve_local_models
    from .services.prefect_server import ephemeral_api

    with serve_local_models(config) as config:
        preflight(config, "optimize")  # before Prefect starts: a run that cannot succeed stops in a second or two
        with (
            ephemeral_api()
        ):  # no PREFECT_API_URL: a server that dies with this process (flows.services.prefect_server)
            return optimize_flow.with_options(task_runner=task_runner_for(config))(config, progress_key=progress_key)


__all__ = ["OptimizationReport", "optimize_flow", "run_optimization", "fingerprint", "trial_records"]
