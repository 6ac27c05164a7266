"""Evaluate's parts on their own: the runner of one example, the pool that runs many, and the record form
rows are persisted and sent between processes in."""

from __future__ import annotations

import json

import pytest

import dsr_core as dsr
from dsr_core.evaluate import (
    EvaluationPool,
    EvaluationRecord,
    EvaluationResult,
    ExampleRunner,
    records_usage,
    row_from_record,
)


def devset(n):
    return [dsr.Example(question=f"q{i}", answer=f"q{i}").with_inputs("question") for i in range(n)]


def echo(request):
    return request.reply(answer=request.inputs["question"])


def exploding_on_q2(example, pred):
    if example.question == "q2":
        raise ValueError("metric exploded")
    return pred.answer == example.answer


# A record as evaluate_shard wrote it before EvaluationRecord existed (a persisted shard result), and one
# older still, without ``transient`` and ``replayed``.
PERSISTED = {
    "index": 7,
    "inputs": '{"question": "q7"}',
    "outputs": '{"answer": "q7"}',
    "gold": '{"answer": "q7"}',
    "score": 1.0,
    "error_type": None,
    "error": None,
    "stage": None,
    "latency": 0.0123,
    "prompt_tokens": 120,
    "completion_tokens": 9,
    "lm_calls": 2,
    "cached_calls": 1,
    "cached": False,
    "transient": False,
    "replayed": False,
    "cost": 0.00021,
    "judge_lm_calls": 0,
    "judge_prompt_tokens": 0,
    "judge_completion_tokens": 0,
}
ADDED_LATER = ("transient", "replayed", "cost", "judge_lm_calls", "judge_prompt_tokens", "judge_completion_tokens")
OLDER = {k: v for k, v in PERSISTED.items() if k not in ADDED_LATER}


async def test_the_runner_classifies_each_outcome_into_its_row(server):
    server.responder = echo
    server.inject("500", 1, match=lambda r: r.inputs.get("question") == "q1")
    lm = dsr.LM("m", api_base=server.url, num_retries=0)
    runner = ExampleRunner(dsr.Predict("question -> answer", lm=lm), exploding_on_q2, failure_score=0.25)
    examples = devset(3)
    (ok, ok_triple), (lm_failed, _), (metric_failed, failed_triple) = [
        await runner.run(e, 10 + i) for i, e in enumerate(examples)
    ]
    assert (ok.index, ok.score, ok.error_type, ok.outputs, ok.lm_calls) == (10, 1.0, None, {"answer": "q0"}, 1)
    assert ok.prompt_tokens > 0 and ok.latency > 0 and ok_triple[0] is examples[0] and ok_triple[2] is True
    assert (lm_failed.error_type, lm_failed.stage, lm_failed.transient, lm_failed.score) == (
        "LMError",
        "program",
        True,
        0.25,
    )
    assert lm_failed.outputs is None
    assert (metric_failed.error_type, metric_failed.stage, metric_failed.transient) == ("ValueError", "metric", False)
    assert metric_failed.outputs == {"answer": "q2"} and metric_failed.error == "metric exploded"
    assert failed_triple[1] == dsr.Prediction() and failed_triple[2] == 0.25


async def test_the_pool_bounds_concurrency_and_reports_every_row(server, lm):
    server.responder = echo
    server.latency = 0.02
    seen = []
    runner = ExampleRunner(dsr.Predict("question -> answer", lm=lm), dsr.exact_match)
    pool = EvaluationPool(runner, concurrency=5, on_row=seen.append, progress=False)
    result = await pool.run(devset(40), list(range(100, 140)))
    assert server.stats.max_in_flight == 5
    assert [r.index for r in result.rows] == list(range(100, 140)) and result.score == 100.0
    assert sorted(r.index for r in seen) == list(range(100, 140))
    assert [(e.question, p.answer) for e, p, _ in result.results] == [(f"q{i}", f"q{i}") for i in range(40)]
    assert pool.failures == 0 and not pool.stopped


async def test_the_pool_stops_at_max_errors_with_the_rows_finished(server, lm):
    server.responder = echo
    server.inject("400", 100, match=lambda r: r.inputs.get("question", "").endswith("3"))
    runner = ExampleRunner(dsr.Predict("question -> answer", lm=lm), dsr.exact_match)
    pool = EvaluationPool(runner, concurrency=1, max_errors=2, progress=False)
    with pytest.raises(dsr.EvaluationAborted, match="first failure at example 3: LMError") as info:
        await pool.run(devset(50), list(range(50)))
    assert info.value.result.n == 14 and info.value.result.errors == 2 and pool.stopped
    with pytest.raises(ValueError, match="one position per example"):
        await pool.run(devset(2), [0])


async def test_records_are_the_rows_as_json_and_back(server, lm):
    server.responder = echo
    result = await dsr.Evaluate(devset(4), exploding_on_q2, progress=False).acall(
        dsr.Predict("question -> answer", lm=lm), indices=[3, 5, 7, 9]
    )
    records = result.records()
    typed = [EvaluationRecord.from_dict(r) for r in records]
    assert [t.to_dict() for t in typed] == records
    assert [EvaluationRecord.from_dict(json.loads(json.dumps(r))).to_dict() for r in records] == records
    assert [EvaluationRecord.from_row(row) for row in result.rows] == typed
    assert [t.to_row() for t in typed] == result.rows == [row_from_record(t) for t in typed]
    assert EvaluationResult.from_records(records).rows == result.rows
    assert typed[2].error_type == "ValueError" and typed[2].stage == "metric"
    assert records_usage(records) == records_usage(typed) == result.usage
    assert result.usage.lm_calls == 4 and result.usage.prompt_tokens == sum(r["prompt_tokens"] for r in records)


def test_records_persisted_before_load_the_same():
    record = EvaluationRecord.from_dict(PERSISTED)
    assert record.to_dict() == PERSISTED and list(record.to_dict()) == list(PERSISTED)
    assert record.usage == dsr.Usage(prompt_tokens=120, completion_tokens=9, lm_calls=2, cached_calls=1, cost=0.00021)
    assert row_from_record(PERSISTED).inputs == {"question": "q7"}
    assert row_from_record(PERSISTED).to_record() == PERSISTED
    older = EvaluationRecord.from_dict(OLDER)
    assert older.to_dict() == {**PERSISTED, "cost": None} and not older.transient and not older.replayed
    assert records_usage([PERSISTED, OLDER, record]).lm_calls == 6
    assert older.usage.unpriced_calls == 1  # written before costs existed: its one uncached call is unpriced


def test_a_replayed_record_reports_no_calls_no_tokens_and_no_cost():
    replayed = EvaluationRecord.from_dict({**PERSISTED, "cached_calls": 2, "cached": True}).as_replayed()
    assert replayed.to_dict() == {
        **PERSISTED,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "lm_calls": 0,
        "cached_calls": 0,
        "cached": False,
        "replayed": True,
        "cost": 0.0,  # nothing was spent on it this time
    }
    assert replayed.usage == dsr.Usage() and replayed.to_row().replayed
