"""Evaluate: run a program over a dataset concurrently and score it, losing nothing to one bad example.

``concurrency`` workers pull examples from a shared cursor (no task per example, no semaphore per call).
An example that fails (LM error, parse error, a metric that raises) becomes a row with its error type and
message, scored ``failure_score``; the run stops only once more than ``max_errors`` examples failed, and
even then the rows finished so far travel with the exception.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._async import run_sync
from .errors import ContextWindowExceededError, DsrError, LMError
from .primitives import Example, Prediction, Usage
from .tracking import current_usage

log = logging.getLogger(__name__)

Metric = Callable[..., Any]


@dataclass
class EvaluationRow:
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

    @property
    def cached(self) -> bool:
        return self.lm_calls > 0 and self.cached_calls == self.lm_calls

    def to_record(self) -> dict[str, Any]:
        """A flat JSON-able record (inputs/outputs/gold as JSON text): the Parquet row and the task result."""
        from .adapters.types import jsonable

        return {
            "index": self.index,
            "inputs": json.dumps(jsonable(self.inputs), ensure_ascii=False),
            "outputs": None if self.outputs is None else json.dumps(jsonable(self.outputs), ensure_ascii=False),
            "gold": json.dumps(jsonable(self.gold), ensure_ascii=False),
            "score": self.score,
            "error_type": self.error_type,
            "error": self.error,
            "stage": self.stage,
            "latency": self.latency,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "lm_calls": self.lm_calls,
            "cached_calls": self.cached_calls,
            "cached": self.cached,
            "transient": self.transient,
            "replayed": self.replayed,
        }


def row_from_record(record: dict[str, Any]) -> EvaluationRow:
    """The inverse of ``EvaluationRow.to_record`` (rows travel between processes as JSON records)."""

    def load(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return EvaluationRow(
        index=record["index"],
        inputs=load(record["inputs"]),
        outputs=load(record["outputs"]),
        gold=load(record["gold"]),
        score=record["score"],
        error_type=record["error_type"],
        error=record["error"],
        stage=record["stage"],
        latency=record["latency"],
        prompt_tokens=record["prompt_tokens"],
        completion_tokens=record["completion_tokens"],
        lm_calls=record["lm_calls"],
        cached_calls=record["cached_calls"],
        transient=record.get("transient", False),
        replayed=record.get("replayed", False),
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class EvaluationResult:
    """Aggregate score (a percentage, as DSPy reports it) and the per-example table."""

    rows: list[EvaluationRow]
    wall_time: float = 0.0

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def score(self) -> float:
        return round(100.0 * sum(r.score for r in self.rows) / self.n, 2) if self.rows else 0.0

    @property
    def usage(self) -> Usage:
        """Tokens and calls of all rows (tokens are spend: cached calls cost none)."""
        total = Usage()
        for r in self.rows:
            total.add(Usage(r.prompt_tokens, r.completion_tokens, r.lm_calls, r.cached_calls))
        return total

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
        return {
            "score": self.score,
            "n": self.n,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "lm_calls": self.usage.lm_calls,
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
    try:
        params = [
            p
            for p in inspect.signature(metric).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return len(params)
    except (TypeError, ValueError):
        return 2


def _as_score(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    score = getattr(value, "score", None)  # dspy.Prediction(score=..., feedback=...) style
    if isinstance(score, (int, float, bool)):
        return float(score)
    raise TypeError(f"a metric must return a number or bool, got {type(value).__name__}")


class Evaluate:
    """``Evaluate(devset=..., metric=..., concurrency=64)(program)`` or ``await evaluate.acall(program)``."""

    def __init__(
        self,
        devset: Sequence[Example] | None = None,
        metric: Metric | None = None,
        *,
        concurrency: int = 64,
        max_errors: int | None = None,
        failure_score: float = 0.0,
        progress: bool | None = None,
        on_row: Callable[[EvaluationRow], None] | None = None,
        num_threads: int | None = None,  # DSPy's name for concurrency
    ) -> None:
        self.devset = list(devset) if devset is not None else None
        self.metric = metric
        self.concurrency = num_threads or concurrency
        self.max_errors = max_errors
        self.failure_score = failure_score
        self.progress = progress
        self.on_row = on_row

    def __call__(
        self, program: Any, *, devset: Sequence[Example] | None = None, metric: Metric | None = None
    ) -> EvaluationResult:
        return run_sync(self.acall(program, devset=devset, metric=metric))

    async def acall(
        self,
        program: Any,
        *,
        devset: Sequence[Example] | None = None,
        metric: Metric | None = None,
        indices: Sequence[int] | None = None,
    ) -> EvaluationResult:
        examples = list(devset) if devset is not None else self.devset
        metric = metric or self.metric
        if examples is None or metric is None:
            raise DsrError("Evaluate needs a devset and a metric (pass them to Evaluate(...) or to the call)")
        positions = list(indices) if indices is not None else list(range(len(examples)))
        if len(positions) != len(examples):
            raise ValueError("indices must give one position per example")
        arity = _metric_arity(metric)
        rows: list[EvaluationRow | None] = [None] * len(examples)
        cursor = iter(range(len(examples)))
        failures = 0
        stop = asyncio.Event()
        reporter = _Progress.start(len(examples), self.progress)
        started = time.perf_counter()

        async def score(example: Example, prediction: Prediction) -> float:
            value = metric(example, prediction, None) if arity >= 3 else metric(example, prediction)
            if inspect.isawaitable(value):
                value = await value
            return _as_score(value)

        async def run_one(i: int) -> EvaluationRow:
            example = examples[i]
            inputs = example.inputs().to_dict() if example.input_keys is not None else example.to_dict()
            gold = example.labels().to_dict() if example.input_keys is not None else {}
            usage = Usage()
            token = current_usage.set(usage)
            t0 = time.perf_counter()
            stage, outputs, transient = "program", None, False
            try:
                prediction = await program.acall(**inputs)
                outputs = prediction.to_dict()
                stage = "metric"
                value = await score(example, prediction)
                error_type = error = stage_out = None
            except Exception as exc:  # noqa: BLE001 - one failing example never sinks the evaluation
                value, error_type, error, stage_out = self.failure_score, type(exc).__name__, str(exc), stage
                transient = is_transient(exc)
                exc_usage = getattr(exc, "usage", None)
                if isinstance(exc_usage, Usage) and usage.lm_calls == 0:
                    usage.add(exc_usage)
            finally:
                current_usage.reset(token)
            return EvaluationRow(
                index=positions[i],
                inputs=inputs,
                outputs=outputs,
                gold=gold,
                score=value,
                error_type=error_type,
                error=error,
                stage=stage_out,
                latency=time.perf_counter() - t0,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                lm_calls=usage.lm_calls,
                cached_calls=usage.cached_calls,
                transient=transient,
            )

        async def worker() -> None:
            nonlocal failures
            for i in cursor:
                if stop.is_set():
                    return
                row = await run_one(i)
                rows[i] = row
                if row.error_type is not None:
                    failures += 1
                    if self.max_errors is not None and failures > self.max_errors:
                        stop.set()
                if self.on_row is not None:
                    self.on_row(row)
                reporter.advance(row)

        workers = min(self.concurrency, len(examples)) or 1
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            reporter.close()
        done = [r for r in rows if r is not None]
        result = EvaluationResult(rows=done, wall_time=time.perf_counter() - started)
        if stop.is_set():
            first = next(r for r in done if r.error_type is not None)
            raise EvaluationAborted(
                f"evaluation stopped: {failures} examples failed (max_errors={self.max_errors}); "
                f"first failure at example {first.index}: {first.error_type}: {first.error}",
                result,
            )
        return result


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
from .metrics import answer_exact_match as answer_exact_match  # noqa: E402 - a re-export, after the engine
