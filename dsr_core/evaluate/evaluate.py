"""``Evaluate``: DSPy's constructor and call over the per-example runner and the pool (also DSPy's
``dspy.evaluate.evaluate``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .._async import run_sync
from ..callback import with_callbacks
from ..errors import DsrError
from ..primitives import Example
from .records import EvaluationResult, EvaluationRow
from .reporting import report_result
from .runner import EvaluationPool, ExampleRunner
from .scoring import Metric, metric_name

log = logging.getLogger(__package__)  # the name evaluation has always logged under


_DSPY_TIMEOUT, _DSPY_STRAGGLER_LIMIT = 120, 3  # DSPy's defaults for its thread pool's straggler resubmission


def _setting(name: str, default: Any) -> Any:
    """A setting from dsr's settings, or ``default`` when this version of the settings does not have it."""
    from ..settings import get

    try:
        value = get(name)
    except KeyError:
        return default
    return default if value is None else value


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


def _warn_straggler_options(timeout: float | None, straggler_limit: int) -> None:
    if timeout != _DSPY_TIMEOUT or straggler_limit != _DSPY_STRAGGLER_LIMIT:
        warnings.warn(
            "Evaluate: timeout= and straggler_limit= have no effect in dsr (no example is resubmitted; every LM "
            "request has the LM's own timeout)",
            stacklevel=3,
        )


__all__ = ["Evaluate", "EvaluationResult"]  # DSPy's dspy.evaluate.evaluate
