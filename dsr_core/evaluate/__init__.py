"""Evaluate: run a program over a dataset concurrently and score it, losing nothing to one bad example.

Two parts: an ``ExampleRunner`` runs one example (the program, the metric, timing, usage) into an
``EvaluationRow``, and an ``EvaluationPool`` runs examples through it with ``concurrency`` workers on a
shared cursor (no task per example, no semaphore per call). An example that fails (LM error, parse error,
a metric that raises) becomes a row with its error type and message, scored ``failure_score``; the run
stops only once ``max_errors`` examples failed, and even then the rows finished so far travel with the
exception. Rows travel between processes and are persisted as ``EvaluationRecord``s (flat JSON).

The package's modules: ``records`` (rows, records, the result), ``scoring`` (calling a metric, reading its
value), ``runner`` (the per-example runner and the pool), ``reporting`` (the log line, tables, saved files,
progress) and ``evaluate`` (``Evaluate``, also DSPy's ``dspy.evaluate.evaluate``).
"""

from types import ModuleType

from .._submodules import submodule
from .evaluate import Evaluate, _setting  # noqa: F401 - _setting: imported from here by the optimizers
from .records import (  # noqa: F401 - ROW_SCHEMA: the package's name as before the split
    ROW_SCHEMA,
    EvaluationRecord,
    EvaluationResult,
    EvaluationRow,
    records_judge_usage,
    records_usage,
    row_from_record,
)
from .reporting import (  # noqa: F401 - the package's names as before the split
    display_result_table,
    merge_dicts,
    report_result,
    results_output,
    write_csv,
    write_json,
)
from .runner import EvaluationAborted, EvaluationPool, ExampleRunner
from .scoring import (  # noqa: F401 - imported from here by the optimizers, refine and the tasks
    Metric,
    _as_score,
    call_metric,
    is_transient,
    metric_feedback,
    metric_name,
    takes_predictor,
)

# isort: split
# DSPy's module path for its metrics (``from dspy.evaluate import answer_exact_match``); they live in metrics.py,
# imported after the engine (which imports the modules that metrics.py needs first)
from ..metrics import EM, CompleteAndGrounded, SemanticF1, answer_exact_match, answer_passage_match, normalize_text

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


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``evaluate.auto_evaluation`` without importing it first, as in DSPy
