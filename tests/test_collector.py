"""The collector's first threshold is raised while examples are in flight and put back afterwards."""

from __future__ import annotations

import gc
import threading

import pytest

import dsr_core as dsr
from dsr_core.collector import fewer_collections
from dsr_core.evaluate import EvaluationAborted


@pytest.fixture(autouse=True)
def default_thresholds(monkeypatch):
    monkeypatch.delenv("DSR_GC_THRESHOLD", raising=False)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_held_raised_and_put_back_when_the_last_holder_leaves():
    with fewer_collections():
        assert gc.get_threshold() == (50_000, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == (50_000, 10, 10)
        assert gc.get_threshold() == (50_000, 10, 10)  # the outer holder still runs
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_holders_on_other_threads():
    inside, leave = threading.Event(), threading.Event()

    def hold():
        with fewer_collections():
            inside.set()
            leave.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    assert inside.wait(10)
    with fewer_collections():
        pass
    assert gc.get_threshold() == (50_000, 10, 10)  # this thread's holder left, the other's has not
    leave.set()
    other.join(10)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_change_made_meanwhile_is_kept():
    with fewer_collections():
        gc.set_threshold(1234, 5, 5)
    assert gc.get_threshold() == (1234, 5, 5)


def test_a_higher_threshold_is_left_alone_and_zero_turns_it_off(monkeypatch):
    gc.set_threshold(100_000, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (100_000, 10, 10)
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("DSR_GC_THRESHOLD", "0")
    with fewer_collections():
        assert gc.get_threshold() == (700, 10, 10)


def test_an_evaluation_runs_under_it_and_puts_it_back(server, lm, monkeypatch):
    monkeypatch.setenv("DSR_GC_THRESHOLD", "30000")
    seen = []

    def metric(example, pred):
        seen.append(gc.get_threshold()[0])
        return pred.answer == example.answer

    devset = [dsr.Example(question=f"q{i}", answer=f"q{i}").with_inputs("question") for i in range(6)]
    server.responder = lambda request: request.reply(answer=request.inputs["question"])
    program = dsr.Predict("question -> answer", lm=lm)
    result = dsr.Evaluate(devset, metric, concurrency=3, progress=False)(program)
    assert result.score == 100.0
    assert seen == [30_000] * 6
    assert gc.get_threshold() == (700, 10, 10)

    def failing(example, pred):
        raise ValueError("metric exploded")

    with pytest.raises(EvaluationAborted):  # an evaluation that ends in an exception puts it back too
        dsr.Evaluate(devset, failing, concurrency=3, progress=False, max_errors=1)(program)
    assert gc.get_threshold() == (700, 10, 10)
