"""DSPy's Evaluate and metrics API on dsr: constructor and call keywords, the result, the table and files."""

from __future__ import annotations

import csv
import json

import pytest

import dsr_core as dsr
from dsr_core.evaluate import (
    EM,
    CompleteAndGrounded,
    Evaluate,
    EvaluationResult,
    SemanticF1,
    answer_exact_match,
    answer_passage_match,
    normalize_text,
    row_from_record,
)


def qa(question, answer):
    return dsr.Example(question=question, answer=answer).with_inputs("question")


DEVSET = [qa("What is 1+1?", "2"), qa("What is 2+2?", "4"), qa("What is 3+3?", "6")]
ANSWERS = {"What is 1+1?": "2", "What is 2+2?": "4", "What is 3+3?": "7"}


@pytest.fixture
def program(server, lm):
    server.responder = lambda r: r.reply(answer=ANSWERS.get(r.inputs.get("question", ""), "?"))
    return dsr.Predict("question -> answer", lm=lm)


def test_dspy_constructor_and_result(program):
    evaluate = Evaluate(devset=DEVSET, metric=answer_exact_match, num_threads=2, display_progress=False)
    assert (evaluate.devset, evaluate.metric, evaluate.num_threads, evaluate.concurrency) == (
        DEVSET,
        answer_exact_match,
        2,
        2,
    )
    result = evaluate(program)
    assert isinstance(result, EvaluationResult)
    assert result.score == 66.67  # DSPy: round(100 * 2 / 3, 2)
    assert result["score"] == result.score and float(result) == 66.67 and result > 50 and result < 70
    assert [(e.question, p.answer, s) for e, p, s in result.results] == [
        ("What is 1+1?", "2", True),
        ("What is 2+2?", "4", True),
        ("What is 3+3?", "7", False),
    ]
    assert result.rows[2].score == 0.0 and result.usage.lm_calls == 3  # dsr's rows stay


def test_call_time_overrides(program, server):
    server.latency = 0.05
    evaluate = Evaluate(devset=DEVSET, metric=answer_exact_match, num_threads=1)
    more = [qa(f"q{i}", "?") for i in range(8)]
    result = evaluate(program, lambda example, pred: 0.5, more, num_threads=4)
    assert result.score == 50.0 and len(result.results) == 8
    assert server.stats.max_in_flight == 4


def test_failures_get_failure_score_and_an_empty_prediction(program, server):
    server.inject("400", 10, match=lambda r: r.inputs.get("question") == "What is 2+2?")
    result = Evaluate(devset=DEVSET, metric=answer_exact_match, failure_score=0.5, provide_traceback=True)(program)
    example, prediction, score = result.results[1]
    assert example is DEVSET[1] and prediction.to_dict() == {} and score == 0.5
    assert result.score == 50.0  # (1 + 0.5 + 0) / 3


def test_max_errors_stops_after_that_many_errors(program, server):
    server.inject("400", 10, match=lambda r: r.inputs.get("question") != "What is 1+1?")
    with pytest.raises(dsr.EvaluationAborted) as info:
        Evaluate(devset=DEVSET, metric=answer_exact_match, num_threads=1, max_errors=1)(program)
    assert info.value.result.errors == 1 and info.value.result.n == 2
    # without max_errors, the max_errors setting (DSPy's 10) applies: two errors do not stop the run
    assert Evaluate(devset=DEVSET, metric=answer_exact_match)(program).rows[2].error_type == "LMError"
    with dsr.context(max_errors=2), pytest.raises(dsr.EvaluationAborted):
        Evaluate(devset=DEVSET, metric=answer_exact_match, num_threads=1)(program)


def test_save_as_csv_and_json_as_dspy_writes_them(program, tmp_path):
    csv_path, json_path = tmp_path / "results.csv", tmp_path / "results.json"
    Evaluate(devset=DEVSET, metric=answer_exact_match, save_as_csv=str(csv_path))(program, save_as_json=str(json_path))
    records = json.loads(json_path.read_text())
    # DSPy's merge: a field in both example and prediction becomes example_<f> and pred_<f>; the score is
    # under the metric's name
    assert records[0] == {
        "question": "What is 1+1?",
        "example_answer": "2",
        "pred_answer": "2",
        "answer_exact_match": True,
    }
    assert records[2]["answer_exact_match"] is False
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == ["question", "example_answer", "pred_answer", "answer_exact_match"]
    assert [r["answer_exact_match"] for r in rows] == ["True", "True", "False"]


def test_metric_name_of_a_callable_object_is_its_class(program, tmp_path):
    path = tmp_path / "out.json"
    Evaluate(devset=DEVSET, metric=dsr.exact_match, save_as_json=str(path))(program)
    assert "ExactMatch" in json.loads(path.read_text())[0]


def test_display_table_prints_the_rows(program, capsys):
    Evaluate(devset=DEVSET, metric=answer_exact_match, display_table=2)(program)
    out = capsys.readouterr().out
    assert "What is 1+1?" in out and "What is 3+3?" not in out
    assert "✔️ [True]" in out and "1 more rows not displayed" in out
    Evaluate(devset=DEVSET, metric=answer_exact_match)(program, display_table=True)
    assert "What is 3+3?" in capsys.readouterr().out


def test_dspy_keywords_without_an_equivalent():
    with pytest.raises(ValueError, match="return_outputs"):
        Evaluate(devset=DEVSET, metric=answer_exact_match, return_outputs=True)
    with pytest.warns(UserWarning, match="return_all_scores"):
        Evaluate(devset=DEVSET, metric=answer_exact_match, return_all_scores=True)
    with pytest.warns(UserWarning, match="straggler_limit"):
        Evaluate(devset=DEVSET, metric=answer_exact_match, timeout=300)


def test_results_rebuilt_from_records(program):
    result = Evaluate(devset=DEVSET, metric=answer_exact_match)(program)
    again = EvaluationResult(rows=[row_from_record(r) for r in result.records()])
    example, prediction, score = again.results[2]
    assert example.inputs().to_dict() == {"question": "What is 3+3?"} and example.answer == "6"
    assert prediction.answer == "7" and score == 0.0 and again.score == result.score


def test_dspy_metrics():
    assert normalize_text("The,  Eiffel  Tower!") == "eiffel tower"
    assert normalize_text("Café") == normalize_text("Cafe\u0301")  # NFD
    example = dsr.Example(question="q", answer=["Eiffel Tower", "Louvre"])
    assert answer_exact_match(example, dsr.Prediction(answer="The Eiffel Tower")) is True
    assert answer_exact_match(example, dsr.Prediction(answer="Eiffel Tower in Paris")) is False
    assert answer_exact_match(example, dsr.Prediction(answer="Eiffel Tower in Paris"), frac=0.5) is True
    assert EM("paris", ["Paris"]) is True
    with pytest.raises(ValueError, match="Invalid answer type"):
        answer_exact_match(dsr.Example(answer=3), dsr.Prediction(answer="3"))
    passages = dsr.Prediction(context=["The Eiffel Tower is in Paris.", "Other text"])
    assert answer_passage_match(dsr.Example(answer="eiffel tower"), passages) is True
    assert answer_passage_match(dsr.Example(answer="Louvre"), passages) is False
    assert answer_passage_match(dsr.Example(answer="Eiffel"), dsr.Prediction(context=["Eiffelturm"])) is False


SCORES = {"recall": "1.0", "precision": "0.5", "completeness": "1.0", "groundedness": "0.5"}


def judge(request):
    """The judge LM: every text field answered, the scores fixed."""
    return request.reply(**{name: SCORES.get(name, "noted") for name in request.output_fields})


def test_semantic_f1_and_complete_and_grounded(server, lm):
    server.responder = judge
    dsr.configure(lm=lm)
    example = dsr.Example(question="Who?", response="Ada Lovelace").with_inputs("question")
    pred = dsr.Prediction(response="Ada", context="Ada Lovelace wrote the first program.")
    assert SemanticF1()(example, pred).score == pytest.approx(2 / 3)
    assert SemanticF1(threshold=0.6)(example, pred, trace=[]).score is True
    assert SemanticF1(decompositional=True)(example, pred).score == pytest.approx(2 / 3)
    assert CompleteAndGrounded()(example, pred).score == pytest.approx(2 / 3)
    asked = server.requests[0]["messages"][0]["content"]
    assert "recall and precision" in asked


def test_an_lm_judged_module_as_the_metric_of_evaluate(server, lm):
    server.responder = lambda r: r.reply(response="Ada") if r.output_fields == ["response"] else judge(r)
    dsr.configure(lm=lm)
    devset = [dsr.Example(question=f"Who {i}?", response="Ada Lovelace").with_inputs("question") for i in range(4)]
    result = Evaluate(devset=devset, metric=SemanticF1(), num_threads=4)(dsr.Predict("question -> response"))
    assert result.score == 66.67 and result.errors == 0
