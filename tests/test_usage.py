"""Usage tracking as DSPy's: ``configure(track_usage=True)`` puts ``{model: {...tokens}}`` on a module call's
prediction (``get_lm_usage()``), ``with track_usage() as tracker`` gives a UsageTracker; cache hits add none."""

import dsr_core as dsr
from dsr_core.tracking import UsageTracker
from tests.programs import RewriteThenAnswer


def tokens(entry):
    usage = entry["usage"]
    return {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def added(*entries):
    return {k: sum(e[k] for e in entries) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def test_prediction_usage_by_model_when_tracking_is_on(server, lm):
    server.responder = lambda r: r.reply(answer="ok")
    dsr.configure(lm=lm, track_usage=True)
    pred = dsr.Predict("question -> answer")(question="q1")
    assert pred.get_lm_usage() == {"test-model": tokens(lm.history[-1])}
    assert pred.get_lm_usage()["test-model"]["total_tokens"] == pred.usage.total_tokens > 0


def test_prediction_usage_is_none_when_tracking_is_off(server, lm):
    server.responder = lambda r: r.reply(answer="ok")
    dsr.configure(lm=lm)
    assert dsr.settings.get("track_usage") is False  # DSPy's default
    pred = dsr.Predict("question -> answer")(question="q")
    assert pred.get_lm_usage() is None
    assert pred.usage.lm_calls == 1 and pred.usage.total_tokens > 0  # dsr's flat totals are always kept


async def test_outermost_module_call_carries_every_call_of_every_model(server, lm):
    server.responder = lambda r: r.reply(**{n: "x" for n in r.output_fields})
    other = dsr.LM("other-model", api_base=server.url)
    program = RewriteThenAnswer()
    program.rewrite.lm = other
    program.answer.set_lm(lm)
    with dsr.context(track_usage=True):
        pred = await program.acall(question="q")
    assert pred.get_lm_usage() == {
        "other-model": tokens(other.history[-1]),
        "test-model": tokens(lm.history[-1]),
    }


def test_track_usage_block_gives_a_usage_tracker_and_nested_blocks_roll_up(server, lm):
    server.responder = lambda r: r.reply(answer="ok")
    dsr.configure(lm=lm, track_usage=True)
    predict = dsr.Predict("question -> answer")
    with dsr.track_usage() as outer:
        assert isinstance(outer, UsageTracker) and dsr.settings.get("usage_tracker") is outer
        first = predict(question="a")
        with dsr.track_usage() as inner:
            predict(question="b")
        assert inner.get_total_tokens() == {"test-model": tokens(lm.history[-1])}
    assert dsr.settings.get("usage_tracker") is None
    assert first.get_lm_usage() is None  # inside a block the block's tracker has the usage, as in DSPy
    assert outer.get_total_tokens() == {"test-model": added(tokens(lm.history[0]), tokens(lm.history[1]))}
    assert len(outer.usage_data["test-model"]) == 2
    assert outer.usage.lm_calls == outer.lm_calls == 2  # dsr's flat totals, read through the tracker too


def test_cache_hits_add_no_usage(server, lm):
    server.responder = lambda r: r.reply(answer="ok")
    dsr.configure(lm=lm, track_usage=True)
    predict = dsr.Predict("question -> answer")
    assert predict(question="same").get_lm_usage() == {"test-model": tokens(lm.history[-1])}
    again = predict(question="same")
    assert server.stats.requests == 1
    assert again.usage.cached_calls == 1
    assert again.get_lm_usage() == {}  # DSPy: a cache hit is not billed, the tracker gets no entry
    with dsr.track_usage() as tracker:
        predict(question="same")
    assert tracker.get_total_tokens() == {} and tracker.cached_calls == 1


def test_usage_tracker_merges_entries_as_dspy_does():
    tracker = UsageTracker()
    tracker.add_usage("m", {"prompt_tokens": 1, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}})
    tracker.add_usage("m", {"prompt_tokens": 3, "completion_tokens": None, "is_byok": True})
    tracker.add_usage("m", {})
    assert tracker.get_total_tokens() == {
        "m": {
            "prompt_tokens": 4,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 1},
            "is_byok": True,
        }
    }


def test_usage_survives_copy_and_pickle(server, lm):
    import pickle

    server.responder = lambda r: r.reply(answer="ok")
    dsr.configure(lm=lm, track_usage=True)
    pred = dsr.Predict("question -> answer")(question="p")
    assert pred.copy().get_lm_usage() == pred.get_lm_usage() == pickle.loads(pickle.dumps(pred)).get_lm_usage()


def test_evaluate_rows_keep_their_usage_with_tracking_on(server, lm):
    server.responder = lambda r: r.reply(answer="a")
    dsr.configure(lm=lm, track_usage=True)
    devset = [dsr.Example(question=q, answer="a").with_inputs("question") for q in ("q1", "q2")]
    evaluate = dsr.Evaluate(devset=devset, metric=lambda e, p, t=None: e.answer == p.answer, num_threads=2)
    with dsr.track_usage() as tracker:
        result = evaluate(dsr.Predict("question -> answer"))
    assert all(row.prompt_tokens > 0 and row.completion_tokens > 0 for row in result.rows)
    assert tracker.get_total_tokens()["test-model"]["prompt_tokens"] == sum(row.prompt_tokens for row in result.rows)
    assert len(tracker.usage_data["test-model"]) == 2
