"""What an evaluation produces: a row per example (``EvaluationRow``), its flat persisted form
(``EvaluationRecord``), the usage they carry, and the run's ``EvaluationResult``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..costs import known_cost
from ..primitives import Example, Prediction, Usage


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
