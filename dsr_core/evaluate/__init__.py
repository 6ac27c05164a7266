"""Evaluate: run a program over a dataset concurrently and score it, losing nothing to one bad example.

Two parts: an ``ExampleRunner`` runs one example (the program, the metric, timing, usage) into an
``EvaluationRow``, and an ``EvaluationPool`` runs examples through it with ``concurrency`` workers on a
shared cursor (no task per example, no semaphore per call). An example that fails (LM error, parse error,
a metric that raises) becomes a row with its error type and message, scored ``failure_score``; the run
stops only once ``max_errors`` examples failed, and even then the rows finished so far travel with the
exception. Rows travel between processes and are persisted as ``EvaluationRecord``s (flat JSON).
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import json
import logging
import math
import sys
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .._async import run_sync
from ..callback import with_callbacks
from ..collector import fewer_collections
from ..costs import known_cost
from ..errors import ContextWindowExceededError, DsrError, LMError
from ..limits import example_slots
from ..modules.module import Module
from ..primitives import Example, Prediction, Usage
from ..tracking import current_usage, track_usage_by_role

log = logging.getLogger(__name__)

Metric = Callable[..., Any]


class _UsageFields:
    """The LM usage an evaluated example carries as four fields (rows and records alike)."""

    prompt_tokens: int
    completion_tokens: int
    lm_calls: int
    cached_calls: int
    judge_lm_calls: int
    judge_prompt_tokens: int
    judge_completion_tokens: int

    @property
    def judge_usage(self) -> Usage:
        """The part of ``usage`` an LM judge's calls made (tokens and calls; priced by whoever has its prices)."""
        return Usage(self.judge_prompt_tokens, self.judge_completion_tokens, self.judge_lm_calls)

    @property
    def usage(self) -> Usage:
        """Tokens, calls and cost behind this example (tokens are spend: cached calls cost none). An example
        whose cost is unknown (an LM without prices) counts its uncached calls as unpriced."""
        cost: float | None = getattr(self, "cost", None)
        unpriced = 0 if cost is not None else self.lm_calls - self.cached_calls
        return Usage(
            self.prompt_tokens,
            self.completion_tokens,
            self.lm_calls,
            self.cached_calls,
            cost=cost or 0.0,
            unpriced_calls=unpriced,
        )


@dataclass
class EvaluationRow(_UsageFields):
    index: int
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    gold: dict[str, Any]
    score: float
    error_type: str | None = None
    error: str | None = None
    stage: str | None = None  # "program" or "metric" when error is set
    latency: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lm_calls: int = 0
    cached_calls: int = 0
    transient: bool = False  # failed for an infrastructure reason (endpoint down, timeouts): worth a retry
    replayed: bool = False  # came back from a persisted result: no LM call was made for it this time
    cost: float | None = None  # US dollars, from the LMs' prices; None: some call had no prices
    judge_lm_calls: int = 0  # of the calls above, those an LM judge made (an LM with role "judge")
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0

    @property
    def cached(self) -> bool:
        return self.lm_calls > 0 and self.cached_calls == self.lm_calls

    def to_record(self) -> dict[str, Any]:
        """A flat JSON-able record (inputs/outputs/gold as JSON text): the Parquet row and the task result."""
        return EvaluationRecord.from_row(self).to_dict()


# What a row and its record hold alike; the record holds inputs, outputs and gold as JSON text, and cached.
_SHARED_FIELDS = (
    "index",
    "score",
    "error_type",
    "error",
    "stage",
    "latency",
    "prompt_tokens",
    "completion_tokens",
    "lm_calls",
    "cached_calls",
    "transient",
    "replayed",
    "cost",
    "judge_lm_calls",
    "judge_prompt_tokens",
    "judge_completion_tokens",
)
# what records written before these existed read them as
_ADDED_LATER = {
    "transient": False,
    "replayed": False,
    "cost": None,
    "judge_lm_calls": 0,
    "judge_prompt_tokens": 0,
    "judge_completion_tokens": 0,
}


@dataclass
class EvaluationRecord(_UsageFields):
    """An evaluated example in the flat form it is persisted and sent between processes in: the Parquet row
    and the shard task's result. Inputs, outputs and gold are JSON text.

    ``to_dict()`` is the record as JSON (the keys in this order), and ``from_dict(record).to_dict() ==
    record`` for every record dsr writes; a record written before ``transient`` and ``replayed`` existed
    reads them as False.
    """

    index: int
    inputs: str
    outputs: str | None
    gold: str
    score: float
    error_type: str | None
    error: str | None
    stage: str | None
    latency: float
    prompt_tokens: int
    completion_tokens: int
    lm_calls: int
    cached_calls: int
    cached: bool
    transient: bool = False
    replayed: bool = False
    cost: float | None = None
    judge_lm_calls: int = 0
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> EvaluationRecord:
        """The typed form of a record dict (as ``to_dict`` and ``evaluate_shard`` return them)."""
        lm_calls, cached_calls = record["lm_calls"], record["cached_calls"]
        return cls(
            inputs=record["inputs"],
            outputs=record["outputs"],
            gold=record["gold"],
            cached=record.get("cached", lm_calls > 0 and cached_calls == lm_calls),
            **{name: record[name] for name in _SHARED_FIELDS if name not in _ADDED_LATER},
            **{name: record.get(name, default) for name, default in _ADDED_LATER.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_row(cls, row: EvaluationRow) -> EvaluationRecord:
        from ..adapters.types import jsonable

        return cls(
            inputs=json.dumps(jsonable(row.inputs), ensure_ascii=False),
            outputs=None if row.outputs is None else json.dumps(jsonable(row.outputs), ensure_ascii=False),
            gold=json.dumps(jsonable(row.gold), ensure_ascii=False),
            cached=row.cached,
            **{name: getattr(row, name) for name in _SHARED_FIELDS},
        )

    def to_row(self) -> EvaluationRow:
        return EvaluationRow(
            inputs=json.loads(self.inputs),
            outputs=None if self.outputs is None else json.loads(self.outputs),
            gold=json.loads(self.gold),
            **{name: getattr(self, name) for name in _SHARED_FIELDS},
        )

    def as_replayed(self) -> EvaluationRecord:
        """This record as a replay of a persisted result reports it: no LM call made, no tokens spent."""
        return replace(
            self,
            prompt_tokens=0,
            completion_tokens=0,
            lm_calls=0,
            cached_calls=0,
            cached=False,
            replayed=True,
            cost=0.0,
            judge_lm_calls=0,
            judge_prompt_tokens=0,
            judge_completion_tokens=0,
        )


def row_from_record(record: Mapping[str, Any] | EvaluationRecord) -> EvaluationRow:
    """The inverse of ``EvaluationRow.to_record`` (rows travel between processes as JSON records)."""
    typed = record if isinstance(record, EvaluationRecord) else EvaluationRecord.from_dict(record)
    return typed.to_row()


def records_usage(records: Iterable[EvaluationRecord | EvaluationRow | Mapping[str, Any]]) -> Usage:
    """The LM usage behind evaluated examples, summed: typed records, rows, or record dicts (as
    ``evaluate_shard`` returns them)."""
    total = Usage()
    for record in records:
        total.add(EvaluationRecord.from_dict(record).usage if isinstance(record, Mapping) else record.usage)
    return total


def records_judge_usage(records: Iterable[EvaluationRecord | EvaluationRow | Mapping[str, Any]]) -> Usage:
    """The part of ``records_usage(records)`` an LM judge made, summed (tokens and calls, no cost)."""
    total = Usage()
    for record in records:
        typed = EvaluationRecord.from_dict(record) if isinstance(record, Mapping) else record
        total.add(typed.judge_usage)
    return total


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class EvaluationResult:
    """Aggregate score (a percentage, as DSPy reports it) and the per-example table.

    As DSPy's result: ``.score`` and ``.results``, a list of (example, prediction, score) triples in devset
    order (a failed example has an empty Prediction and the failure score), ``result["score"]``, and
    ``float(result)`` and comparisons by score.
    """

    rows: list[EvaluationRow]
    wall_time: float = 0.0
    _results: list[tuple[Any, Any, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def results(self) -> list[tuple[Any, Any, Any]]:
        """(example, prediction, score) per row: the objects of this run, or rebuilt from the rows (rows that
        came from records, as in the flows) with the row's score."""
        if self._results is not None and len(self._results) == len(self.rows):
            return list(self._results)
        triples = []
        for row in self.rows:
            example = Example({**row.inputs, **row.gold}).with_inputs(*row.inputs)
            prediction = Prediction(row.outputs) if row.outputs is not None and row.error_type is None else Prediction()
            triples.append((example, prediction, row.score))
        return triples

    def __getitem__(self, key: str) -> Any:
        if key in ("score", "results"):
            return getattr(self, key)
        raise KeyError(key)

    def keys(self) -> list[str]:
        return ["score", "results"]

    def __float__(self) -> float:
        return float(self.score)

    def __lt__(self, other: Any) -> bool:
        return self.score < float(other)

    def __le__(self, other: Any) -> bool:
        return self.score <= float(other)

    def __gt__(self, other: Any) -> bool:
        return self.score > float(other)

    def __ge__(self, other: Any) -> bool:
        return self.score >= float(other)

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def score(self) -> float:
        return round(100.0 * sum(r.score for r in self.rows) / self.n, 2) if self.rows else 0.0

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any] | EvaluationRecord], *, wall_time: float = 0.0
    ) -> EvaluationResult:
        """The result of evaluation records (as ``evaluate_shard`` returns them), in their order."""
        return cls(rows=[row_from_record(r) for r in records], wall_time=wall_time)

    @property
    def usage(self) -> Usage:
        """Tokens and calls of all rows (tokens are spend: cached calls cost none)."""
        return records_usage(self.rows)

    @property
    def errors(self) -> int:
        return sum(1 for r in self.rows if r.error_type is not None)

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.rows else 0.0

    @property
    def cached_fraction(self) -> float:
        calls = sum(r.lm_calls for r in self.rows)
        return sum(r.cached_calls for r in self.rows) / calls if calls else 0.0

    def latency(self, q: float) -> float:
        return _percentile([r.latency for r in self.rows], q)

    def summary(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "score": self.score,
            "n": self.n,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "lm_calls": usage.lm_calls,
            "cached_calls": usage.cached_calls,
            "cost": known_cost(usage),
            "cached_fraction": self.cached_fraction,
            "latency_p50": self.latency(0.5),
            "latency_p95": self.latency(0.95),
            "wall_time": self.wall_time,
        }

    def records(self) -> list[dict[str, Any]]:
        return [r.to_record() for r in self.rows]

    def to_arrow(self) -> Any:
        import pyarrow as pa

        return pa.Table.from_pylist(self.records(), schema=ROW_SCHEMA())

    def to_parquet(self, path: str) -> None:
        import pyarrow.parquet as pq

        pq.write_table(self.to_arrow(), path)

    def __repr__(self) -> str:
        return f"EvaluationResult(score={self.score}, n={self.n}, errors={self.errors})"


def ROW_SCHEMA() -> Any:  # noqa: N802 - a constant, built lazily so pyarrow is imported only when used
    import pyarrow as pa

    return pa.schema(
        [
            ("index", pa.int64()),
            ("inputs", pa.string()),
            ("outputs", pa.string()),
            ("gold", pa.string()),
            ("score", pa.float64()),
            ("error_type", pa.string()),
            ("error", pa.string()),
            ("stage", pa.string()),
            ("latency", pa.float64()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("lm_calls", pa.int64()),
            ("cost", pa.float64()),
            ("judge_lm_calls", pa.int64()),
            ("judge_prompt_tokens", pa.int64()),
            ("judge_completion_tokens", pa.int64()),
            ("cached_calls", pa.int64()),
            ("cached", pa.bool_()),
            ("transient", pa.bool_()),
            ("replayed", pa.bool_()),
        ]
    )


class EvaluationAborted(DsrError):
    """More than ``max_errors`` examples failed. ``result`` holds every row finished before the stop."""

    def __init__(self, message: str, result: EvaluationResult) -> None:
        super().__init__(message)
        self.result = result


def is_transient(exc: BaseException) -> bool:
    """Did this fail for an infrastructure reason that a later attempt may not meet (the endpoint down or
    refusing, timeouts, rate limits, broken connections), rather than because of the program, the data or
    the metric? Such a failure is never final: it is not replayed from persisted results."""
    if isinstance(exc, ContextWindowExceededError):
        return False  # the request itself is too long: the same request fails again
    return isinstance(exc, (LMError, OSError, TimeoutError))


def _metric_arity(metric: Metric) -> int:
    """How many of ``(example, prediction, trace, pred_name, pred_trace)`` the metric takes: its positional
    parameters, or 5 for a GEPA feedback metric (known by a ``pred_name`` parameter). Computed once per
    evaluation, not per example: ``inspect.signature`` costs more than a cached LM call."""
    try:
        parameters = inspect.signature(metric).parameters
    except (TypeError, ValueError):
        return 2
    if "pred_name" in parameters:
        return 5
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters.values())


def takes_predictor(metric: Metric) -> bool:
    """Is this a GEPA feedback metric, ``metric(gold, pred, trace, pred_name, pred_trace)``? Known by a
    ``pred_name`` parameter or by five positional parameters (DSPy's GEPAFeedbackMetric)."""
    return not isinstance(metric, Module) and _metric_arity(metric) >= 5


async def call_metric(
    metric: Metric,
    example: Any,
    prediction: Any,
    trace: Any = None,
    *,
    arity: int | None = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
) -> Any:
    """The metric's value for one example: ``metric(example, prediction[, trace])``, awaited if it is async;
    a metric that is a Module (an LM judge such as SemanticF1) runs on the caller's event loop. A GEPA
    feedback metric gets ``pred_name`` and ``pred_trace`` too (None: feedback for the whole program)."""
    if isinstance(metric, Module):
        value = await (metric.acall(example, prediction) if trace is None else metric.acall(example, prediction, trace))
    else:
        arity = _metric_arity(metric) if arity is None else arity
        if arity >= 5:
            value = metric(example, prediction, trace, pred_name, pred_trace)
        elif arity >= 3:
            value = metric(example, prediction, trace)
        else:
            value = metric(example, prediction)
    if inspect.isawaitable(value):
        value = await value
    return value


def _as_score(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    score = getattr(value, "score", None)  # dspy.Prediction(score=..., feedback=...) style
    if isinstance(score, (int, float, bool)):
        return float(score)
    raise TypeError(f"a metric must return a number or bool, got {type(value).__name__}")


def metric_feedback(value: Any) -> str | None:
    """The text feedback of a metric's value (DSPy's ``Prediction(score=..., feedback=...)``), if it has one."""
    feedback = getattr(value, "feedback", None)
    return None if feedback is None else str(feedback)


_DSPY_TIMEOUT, _DSPY_STRAGGLER_LIMIT = 120, 3  # DSPy's defaults for its thread pool's straggler resubmission


def _setting(name: str, default: Any) -> Any:
    """A setting from dsr's settings, or ``default`` when this version of the settings does not have it."""
    from ..settings import get

    try:
        value = get(name)
    except KeyError:
        return default
    return default if value is None else value


def metric_name(metric: Metric) -> str:
    """The metric's name as DSPy writes it in tables and saved files: a function's name, else its class name."""
    return metric.__name__ if isinstance(metric, types.FunctionType) else type(metric).__name__


class ExampleRunner:
    """Runs one example: the program, then the metric, timed, with the LM usage spent inside counted.

    A failure of either (an LM error, a reply that does not parse, a metric that raises or returns no
    number) is classified into the row, with its error type, its stage and whether it is transient, and
    scored ``failure_score``; ``run`` itself never raises for the example's sake.
    """

    def __init__(
        self, program: Any, metric: Metric, *, failure_score: float = 0.0, provide_traceback: bool = False
    ) -> None:
        self.program = program
        self.metric = metric
        self.arity = _metric_arity(metric)
        self.failure_score = failure_score
        self.provide_traceback = provide_traceback

    async def run(self, example: Example, index: int) -> tuple[EvaluationRow, tuple[Example, Any, Any]]:
        """The example's row, numbered ``index``, and DSPy's (example, prediction, metric value) for it (a
        failed example has an empty Prediction and the failure score)."""
        inputs = example.inputs().to_dict() if example.input_keys is not None else example.to_dict()
        gold = example.labels().to_dict() if example.input_keys is not None else {}
        usage = Usage()
        token = current_usage.set(usage)
        started = time.perf_counter()
        stage, outputs, transient = "program", None, False
        with track_usage_by_role() as by_role:  # which calls were the judge's
            try:
                prediction = await self.program.acall(**inputs)
                outputs = prediction.to_dict()
                stage = "metric"
                value = await call_metric(self.metric, example, prediction, arity=self.arity)
                score = _as_score(value)
                error_type = error = failed_stage = None
                triple = (example, prediction, value)
            except Exception as exc:  # noqa: BLE001 - one failing example never sinks the evaluation
                score, error_type, error, failed_stage = self.failure_score, type(exc).__name__, str(exc), stage
                transient = is_transient(exc)
                spent = getattr(exc, "usage", None)  # the calls of a reply that did not parse
                if isinstance(spent, Usage) and usage.lm_calls == 0:
                    usage.add(spent)
                triple = (example, Prediction(), self.failure_score)  # DSPy keeps no prediction for it
                self._log_failure(example, exc)
            finally:
                current_usage.reset(token)
        judge = by_role.get("judge") or Usage()
        row = EvaluationRow(
            index=index,
            inputs=inputs,
            outputs=outputs,
            gold=gold,
            score=score,
            error_type=error_type,
            error=error,
            stage=failed_stage,
            latency=time.perf_counter() - started,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            lm_calls=usage.lm_calls,
            cached_calls=usage.cached_calls,
            transient=transient,
            cost=known_cost(usage),
            judge_lm_calls=judge.lm_calls,
            judge_prompt_tokens=judge.prompt_tokens,
            judge_completion_tokens=judge.completion_tokens,
        )
        return row, triple

    def _log_failure(self, example: Example, exc: Exception) -> None:
        if self.provide_traceback:
            log.error("Error for %s: %s\n%s", example, exc, traceback.format_exc())
        else:
            log.error("Error for %s: %s. Set `provide_traceback=True` for traceback.", example, exc)


class EvaluationPool:
    """Runs examples through an ExampleRunner, at most ``concurrency`` at a time: that many workers pull
    examples from one shared cursor (no task per example, no semaphore per call).

    Every finished row goes to ``on_row`` and to the progress display. Once ``max_errors`` examples have
    failed, no worker takes another example, and ``run`` raises EvaluationAborted with the rows finished.
    """

    def __init__(
        self,
        runner: ExampleRunner,
        *,
        concurrency: int,
        max_errors: int | None = None,
        on_row: Callable[[EvaluationRow], None] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.runner = runner
        self.concurrency = concurrency
        self.max_errors = max_errors
        self.on_row = on_row
        self.progress = progress
        self.failures = 0
        self.stopped = False

    async def run(self, examples: Sequence[Example], positions: Sequence[int]) -> EvaluationResult:
        """Evaluate ``examples``, the row of ``examples[i]`` numbered ``positions[i]``; rows in example order."""
        if len(positions) != len(examples):
            raise ValueError("indices must give one position per example")
        self.failures, self.stopped = 0, False
        rows: list[EvaluationRow | None] = [None] * len(examples)
        triples: list[tuple[Example, Any, Any] | None] = [None] * len(examples)
        cursor = iter(range(len(examples)))
        reporter = _Progress.start(len(examples), self.progress)
        started = time.perf_counter()

        slots = example_slots.get()  # shared with the rest of an optimizer step, when it shares them

        async def worker() -> None:
            for i in cursor:
                if self.stopped:
                    return
                if slots is None:
                    row, triples[i] = await self.runner.run(examples[i], positions[i])
                else:
                    async with slots:
                        row, triples[i] = await self.runner.run(examples[i], positions[i])
                rows[i] = row
                self._finished(row, reporter)

        try:
            with fewer_collections():  # the collector's passes would walk every call in flight, to free little
                await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(examples)) or 1)))
        finally:
            reporter.close()
        done = [r for r in rows if r is not None]
        finished = [t for t, r in zip(triples, rows, strict=True) if r is not None and t is not None]
        result = EvaluationResult(rows=done, wall_time=time.perf_counter() - started, _results=finished)
        if self.stopped:
            first = next(r for r in done if r.error_type is not None)
            raise EvaluationAborted(
                f"evaluation stopped: {self.failures} examples failed (max_errors={self.max_errors}); "
                f"first failure at example {first.index}: {first.error_type}: {first.error}",
                result,
            )
        return result

    def _finished(self, row: EvaluationRow, reporter: _Progress) -> None:
        if row.error_type is not None:
            self.failures += 1
            if self.max_errors is not None and self.failures >= self.max_errors:  # DSPy stops at max_errors
                self.stopped = True
        if self.on_row is not None:
            self.on_row(row)
        reporter.advance(row)


class Evaluate:
    """``Evaluate(devset=..., metric=..., num_threads=16)(program)`` or ``await evaluate.acall(program)``.

    DSPy's constructor and call: ``num_threads`` is dsr's ``concurrency`` (asyncio workers, not threads),
    ``display_progress`` its ``progress``; ``display_table``, ``save_as_csv`` and ``save_as_json`` print and
    write what DSPy prints and writes; ``max_errors`` (default: the ``max_errors`` setting, as in DSPy)
    stops the run once that many examples failed. ``timeout`` and ``straggler_limit`` are
    accepted and have no effect: no example is resubmitted, each LM request has the LM's own timeout.
    """

    def __init__(
        self,
        devset: Sequence[Example] | None = None,
        metric: Metric | None = None,
        *,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int = False,
        max_errors: int | None = None,
        provide_traceback: bool | None = None,
        failure_score: float = 0.0,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
        timeout: float | None = _DSPY_TIMEOUT,
        straggler_limit: int = _DSPY_STRAGGLER_LIMIT,
        concurrency: int = 64,
        progress: bool | None = None,
        on_row: Callable[[EvaluationRow], None] | None = None,
        **kwargs: Any,
    ) -> None:
        if "return_outputs" in kwargs:
            raise ValueError(
                "`return_outputs` is no longer supported. Results are always returned inside the `results` field "
                "of the `EvaluationResult` object."
            )
        for name in kwargs:
            why = "scores are in `result.results`" if name == "return_all_scores" else "not a parameter of Evaluate"
            warnings.warn(f"Evaluate: {name}= is ignored ({why})", stacklevel=2)
        _warn_straggler_options(timeout, straggler_limit)
        self.devset = list(devset) if devset is not None else None
        self.metric = metric
        self.num_threads = num_threads
        self.concurrency = num_threads or concurrency
        self.display_progress = display_progress if display_progress is not None else progress
        self.progress = self.display_progress
        self.display_table = display_table
        self.max_errors = max_errors
        self.provide_traceback = provide_traceback
        self.failure_score = failure_score
        self.save_as_csv = save_as_csv
        self.save_as_json = save_as_json
        self.timeout = timeout
        self.straggler_limit = straggler_limit
        self.on_row = on_row

    def __call__(
        self,
        program: Any,
        metric: Metric | None = None,
        devset: Sequence[Example] | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int | None = None,
        callback_metadata: dict[str, Any] | None = None,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
        timeout: float | None = _DSPY_TIMEOUT,
        straggler_limit: int | None = None,
    ) -> EvaluationResult:
        """DSPy's call: every argument but ``program`` overrides the constructor's value for this call."""
        return run_sync(
            self.acall(
                program,
                metric=metric,
                devset=devset,
                num_threads=num_threads,
                display_progress=display_progress,
                display_table=display_table,
                callback_metadata=callback_metadata,
                save_as_csv=save_as_csv,
                save_as_json=save_as_json,
                timeout=timeout,
                straggler_limit=straggler_limit,
            )
        )

    @with_callbacks  # DSPy's on_evaluate_start/end (the sync call goes through here too)
    async def acall(
        self,
        program: Any,
        metric: Metric | None = None,
        devset: Sequence[Example] | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int | None = None,
        callback_metadata: dict[str, Any] | None = None,
        save_as_csv: str | None = None,
        save_as_json: str | None = None,
        timeout: float | None = _DSPY_TIMEOUT,
        straggler_limit: int | None = None,
        *,
        indices: Sequence[int] | None = None,
    ) -> EvaluationResult:
        """Evaluate ``program``; ``indices`` numbers the rows (a shard of a larger set keeps its positions).

        A shard is stopped only by an explicit ``max_errors``: the ``max_errors`` setting is a limit for a
        whole evaluation, which one shard cannot see."""
        examples = list(devset) if devset is not None else self.devset
        metric = metric if metric is not None else self.metric
        if examples is None or metric is None:
            raise DsrError("Evaluate needs a devset and a metric (pass them to Evaluate(...) or to the call)")
        if callback_metadata:
            log.debug("Evaluate is called with callback metadata: %s", callback_metadata)
        _warn_straggler_options(timeout, straggler_limit if straggler_limit is not None else _DSPY_STRAGGLER_LIMIT)
        concurrency = num_threads or self.concurrency
        show_progress = display_progress if display_progress is not None else self.display_progress
        table = display_table if display_table is not None else self.display_table
        csv_path = save_as_csv if save_as_csv is not None else self.save_as_csv
        json_path = save_as_json if save_as_json is not None else self.save_as_json
        max_errors = self.max_errors
        if max_errors is None and indices is None:  # a shard (indices given) leaves the run's limit to its caller
            max_errors = _setting("max_errors", None)
        traceback_wanted = (
            self.provide_traceback if self.provide_traceback is not None else _setting("provide_traceback", False)
        )
        positions = list(indices) if indices is not None else list(range(len(examples)))
        runner = ExampleRunner(program, metric, failure_score=self.failure_score, provide_traceback=traceback_wanted)
        pool = EvaluationPool(
            runner, concurrency=concurrency, max_errors=max_errors, on_row=self.on_row, progress=show_progress
        )
        result = await pool.run(examples, positions)
        report_result(result, metric_name(metric), display_table=table, save_as_csv=csv_path, save_as_json=json_path)
        return result


def report_result(
    result: EvaluationResult,
    name: str,
    *,
    display_table: bool | int = False,
    save_as_csv: str | None = None,
    save_as_json: str | None = None,
) -> None:
    """What DSPy's Evaluate reports at the end: the average metric in the log, and the table and files asked
    for (the score column named ``name``)."""
    if result.rows:
        total = sum(r.score for r in result.rows)
        log.info("Average Metric: %s / %s (%s%%)", total, result.n, round(100 * total / result.n, 1))
    if display_table or save_as_csv or save_as_json:
        records = results_output(result.results, name)
        if display_table:
            display_result_table(records, display_table, name)
        if save_as_csv:
            write_csv(records, save_as_csv)
        if save_as_json:
            write_json(records, save_as_json)


def _warn_straggler_options(timeout: float | None, straggler_limit: int) -> None:
    if timeout != _DSPY_TIMEOUT or straggler_limit != _DSPY_STRAGGLER_LIMIT:
        warnings.warn(
            "Evaluate: timeout= and straggler_limit= have no effect in dsr (no example is resubmitted; every LM "
            "request has the LM's own timeout)",
            stacklevel=3,
        )


# -- DSPy's table and saved files -----------------------------------------------------------------------------------


def merge_dicts(example: Any, prediction: Any) -> dict[str, Any]:
    """DSPy's merge of an example and its prediction: a key in both becomes ``example_k`` and ``pred_k``."""
    first = example.to_dict() if hasattr(example, "to_dict") else dict(example)
    second = prediction.to_dict() if hasattr(prediction, "to_dict") else dict(prediction)
    merged: dict[str, Any] = {}
    for key, value in first.items():
        merged[f"example_{key}" if key in second else key] = value
    for key, value in second.items():
        merged[f"pred_{key}" if key in first else key] = value
    return merged


def results_output(results: Sequence[tuple[Any, Any, Any]], name: str) -> list[dict[str, Any]]:
    """One record per example as DSPy saves and displays it: example and prediction fields, then the score
    under the metric's name."""
    records = []
    for example, prediction, score in results:
        if hasattr(prediction, "items") and callable(prediction.items):
            records.append(merge_dicts(example, prediction) | {name: score})
        else:
            records.append(example.to_dict() | {"prediction": prediction, name: score})
    return records


def write_csv(records: list[dict[str, Any]], path: str) -> None:
    """``save_as_csv``: a header of every column (in order of first appearance), one row per example."""
    fieldnames = list(dict.fromkeys(key for record in records for key in record))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        for record in records:
            writer.writerow(record)


def write_json(records: list[dict[str, Any]], path: str) -> None:
    """``save_as_json``: a JSON list of the records (values that are not JSON, such as pydantic models, as
    their JSON form)."""
    from ..adapters.types import jsonable

    with open(path, "w") as handle:
        json.dump([{key: jsonable(value) for key, value in record.items()} for record in records], handle)


def _truncate_cell(content: Any) -> Any:
    """DSPy truncates every table cell to 25 words."""
    words = str(content).split()
    return " ".join(words[:25]) + "..." if len(words) > 25 else content


def _format_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"✔️ [{value:.3f}]"
    return f"✔️ [{value}]" if value is not None else ""


def display_result_table(records: list[dict[str, Any]], display_table: bool | int, name: str) -> None:
    """``display_table``: print the records as DSPy does (a pandas DataFrame, cells cut to 25 words, the score
    column as ``✔️ [score]``); a number shows that many rows and says how many were left out."""
    shown = records if isinstance(display_table, bool) else records[: int(display_table)]
    truncated = len(records) - len(shown)
    cells = [{key: _truncate_cell(value) for key, value in record.items()} for record in shown]
    for record in cells:
        record[name] = _format_metric(record.get(name))
    try:
        import pandas as pd
    except ImportError:
        _print_rich_table(cells)
    else:
        with pd.option_context("display.max_rows", None, "display.max_columns", None):
            print(pd.DataFrame(cells))
    if truncated > 0:
        print(f"... {truncated} more rows not displayed ...")


def _print_rich_table(cells: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = list(dict.fromkeys(key for record in cells for key in record))
    table = Table(*columns)
    for record in cells:
        table.add_row(*(str(record.get(column, "")) for column in columns))
    Console().print(table)


class _Progress:
    """A rich progress bar when asked for (or when stderr is a terminal); otherwise nothing."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._done = 0
        self._score = 0.0
        self._errors = 0

    @classmethod
    def start(cls, total: int, enabled: bool | None) -> _Progress:
        progress = cls()
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            progress._bar = Progress(
                TextColumn("evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("score {task.fields[score]:.1f}  errors {task.fields[errors]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            progress._task = progress._bar.add_task("evaluate", total=total, score=0.0, errors=0)
            progress._bar.start()
        return progress

    def advance(self, row: EvaluationRow) -> None:
        if self._bar is None:
            return
        self._done += 1
        self._score += row.score
        self._errors += row.error_type is not None
        self._bar.update(self._task, advance=1, score=100 * self._score / self._done, errors=self._errors)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# DSPy's module path for its metrics (``from dspy.evaluate import answer_exact_match``); they live in metrics.py
from ..metrics import (  # noqa: E402 - re-exports, after the engine
    EM,
    CompleteAndGrounded,
    SemanticF1,
    answer_exact_match,
    answer_passage_match,
    normalize_text,
)

__all__ = [
    "EM",
    "CompleteAndGrounded",
    "EvaluationAborted",
    "EvaluationPool",
    "EvaluationRecord",
    "EvaluationResult",
    "EvaluationRow",
    "Evaluate",
    "ExampleRunner",
    "SemanticF1",
    "answer_exact_match",
    "answer_passage_match",
    "normalize_text",
    "records_judge_usage",
    "records_usage",
    "row_from_record",
]
