import asyncio

import pyarrow.parquet as pq
import pytest

import dsr_core as dsr


def devset(n):
    return [dsr.Example(question=f"q{i}", answer=f"q{i}").with_inputs("question") for i in range(n)]


def echo(request):
    return request.reply(answer=request.inputs["question"])


async def test_scores_and_per_example_table(server, lm, tmp_path):
    server.responder = echo
    program = dsr.Predict("question -> answer", lm=lm)
    result = await dsr.Evaluate(devset(30), dsr.exact_match, concurrency=8, progress=False).acall(program)
    assert result.score == 100.0 and result.n == 30 and result.errors == 0
    assert [r.index for r in result.rows] == list(range(30))
    row = result.rows[0]
    assert row.inputs == {"question": "q0"} and row.gold == {"answer": "q0"} and row.outputs == {"answer": "q0"}
    assert row.lm_calls == 1 and row.prompt_tokens > 0 and not row.cached and row.latency > 0
    path = tmp_path / "rows.parquet"
    result.to_parquet(str(path))
    table = pq.read_table(path)
    assert table.num_rows == 30 and table.column("score").to_pylist() == [1.0] * 30
    summary = result.summary()
    assert summary["lm_calls"] == 30 and summary["latency_p95"] >= summary["latency_p50"]


async def test_failure_isolation(server, lm):
    """LM errors, parse errors and metric errors become rows; the evaluation finishes."""
    server.responder = echo
    server.inject("500", 10, match=lambda r: r.inputs.get("question") == "q1")  # retries exhausted
    server.inject("garbage", 10, match=lambda r: r.inputs.get("question") == "q2")
    lm = dsr.LM("m", api_base=server.url, num_retries=1, retry_backoff=(0.01, 0.02))
    server.inject("unparseable", 1, match=lambda r: r.inputs.get("question") == "q3" and not r.json_mode)
    server.inject("unparseable", 1, match=lambda r: r.inputs.get("question") == "q3" and r.json_mode)

    def metric(example, pred):
        if example.question == "q4":
            raise ValueError("metric exploded")
        return pred.answer == example.answer

    result = await dsr.Evaluate(devset(8), metric, concurrency=4, failure_score=0.0).acall(
        dsr.Predict("question -> answer", lm=lm)
    )
    by_index = {r.index: r for r in result.rows}
    assert result.n == 8 and result.errors == 4
    assert by_index[1].error_type == "LMError" and by_index[1].stage == "program"
    assert by_index[2].error_type == "LMError" and "malformed" in by_index[2].error
    assert by_index[3].error_type == "AdapterParseError" and by_index[3].lm_calls == 2
    assert by_index[4].error_type == "ValueError" and by_index[4].stage == "metric"
    assert by_index[4].outputs == {"answer": "q4"}
    assert result.score == pytest.approx(100 * 4 / 8)


async def test_max_errors_stops_and_keeps_finished_rows(server, lm):
    server.responder = echo
    server.inject("400", 100, match=lambda r: r.inputs.get("question", "").endswith("7"))

    with pytest.raises(dsr.EvaluationAborted) as info:
        await dsr.Evaluate(devset(100), dsr.exact_match, concurrency=1, max_errors=2).acall(
            dsr.Predict("question -> answer", lm=lm)
        )
    partial = info.value.result
    assert partial.errors == 2 and partial.n == 18  # DSPy stops at the max_errors-th error (q7, q17)
    assert "max_errors=2" in str(info.value)


async def test_concurrency_is_bounded_and_used(server, lm):
    server.responder = echo
    server.latency = 0.05
    result = await dsr.Evaluate(devset(64), dsr.exact_match, concurrency=16).acall(
        dsr.Predict("question -> answer", lm=lm)
    )
    assert server.stats.max_in_flight == 16  # the bound was reached and never passed
    assert result.n == 64 and server.stats.requests == 64 and result.errors == 0


async def test_cached_reevaluation(server, lm):
    server.responder = echo
    evaluate = dsr.Evaluate(devset(20), dsr.exact_match, concurrency=8)
    program = dsr.Predict("question -> answer", lm=lm)
    await evaluate.acall(program)
    again = await evaluate.acall(program)
    assert again.cached_fraction == 1.0 and all(r.cached for r in again.rows)
    assert again.usage.total_tokens == 0 and server.stats.requests == 20


def test_sync_call_with_async_metric_and_num_threads_alias(server, lm):
    server.responder = echo

    async def metric(example, pred, trace=None):
        await asyncio.sleep(0)
        return 0.5

    result = dsr.Evaluate(devset(4), metric, num_threads=2)(dsr.Predict("question -> answer", lm=lm))
    assert result.score == 50.0


def test_non_numeric_metric_is_a_metric_error(server, lm):
    server.responder = echo
    result = dsr.Evaluate(devset(2), lambda e, p: "yes")(dsr.Predict("question -> answer", lm=lm))
    assert {r.error_type for r in result.rows} == {"TypeError"}
