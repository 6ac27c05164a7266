"""The per-example runner (``ExampleRunner``: the program, the metric, timing, usage, into a row) and the
pool that runs examples through it with ``concurrency`` workers on a shared cursor (``EvaluationPool``)."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ..collector import fewer_collections
from ..costs import known_cost
from ..errors import DsrError
from ..limits import example_slots
from ..primitives import Example, Prediction, Usage
from ..tracking import current_usage, track_usage_by_role
from .records import EvaluationResult, EvaluationRow
from .reporting import _Progress
from .scoring import Metric, _as_score, _metric_arity, call_metric, is_transient

log = logging.getLogger(__package__)  # the name evaluation has always logged under


class EvaluationAborted(DsrError):
    """More than ``max_errors`` examples failed. ``result`` holds every row finished before the stop."""

    def __init__(self, message: str, result: EvaluationResult) -> None:
        super().__init__(message)
        self.result = result


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
