import asyncio
import threading

import pytest

import dsr_core as dsr


def test_configure_from_any_thread_and_context_isolation():
    a, b = dsr.LM("a"), dsr.LM("b")
    seen = {}

    def configure_in_thread():
        dsr.configure(lm=a)  # any thread may configure; there is no owner thread

    t = threading.Thread(target=configure_in_thread)
    t.start()
    t.join()
    assert dsr.settings.lm is a

    def worker(name, lm):
        with dsr.context(lm=lm):
            barrier.wait()
            seen[name] = dsr.settings.lm

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=worker, args=("x", b)), threading.Thread(target=worker, args=("y", a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"x": b, "y": a}
    assert dsr.settings.lm is a


async def test_context_is_isolated_between_asyncio_tasks():
    a, b = dsr.LM("a"), dsr.LM("b")
    dsr.configure(lm=a)

    async def task(lm, delay):
        with dsr.context(lm=lm):
            await asyncio.sleep(delay)
            return dsr.settings.lm

    got = await asyncio.gather(task(b, 0.02), task(None, 0.01), task(a, 0))
    assert got[0] is b and got[1] is None and got[2] is a
    assert dsr.settings.lm is a


async def test_context_flows_into_program_calls(server):
    main = dsr.LM("main", api_base=server.url)
    other = dsr.LM("other", api_base=server.url)
    dsr.configure(lm=main)
    server.responder = lambda r: r.reply(answer=r.model)
    predict = dsr.Predict("question -> answer")
    with dsr.context(lm=other):
        inside = (await predict.acall(question="1")).answer
        inside_sync = await asyncio.to_thread(lambda: predict(question="2").answer)
    assert inside == "other" and inside_sync == "other"
    assert (await predict.acall(question="3")).answer == "main"


def test_unknown_setting_is_rejected():
    import pytest

    with pytest.raises(TypeError, match="unknown setting"):
        dsr.configure(lmm=None)


def test_dspy_settings_api_and_trace_is_the_tracking_list(server, lm):
    server.responder = lambda r: r.reply(answer="ok")
    assert dsr.settings.configure is dsr.configure and dsr.settings.trace is None
    snapshot = dsr.settings.copy()
    dsr.settings.configure(**snapshot)  # every setting DSPy's copy() returns is accepted back
    predict = dsr.Predict("question -> answer", lm=lm)
    calls = []
    with dsr.settings.context(trace=calls):
        assert dsr.settings.trace is calls
        predict(question="q")
        with dsr.trace() as inner:
            predict(question="r")
        assert dsr.settings.trace is calls
    assert dsr.settings.trace is None
    assert [c[1] for c in calls] == [{"question": "q"}] and inner[0][1] == {"question": "r"}


def test_record_trace_honours_max_trace_size():
    from dsr_core.tracking import record_trace

    with dsr.context(trace=[], max_trace_size=2):
        for i in range(5):
            record_trace(None, {"i": i}, None)
        assert [c[1]["i"] for c in dsr.settings.trace] == [3, 4]
    with dsr.context(trace=[], max_trace_size=0):
        record_trace(None, {}, None)
        assert dsr.settings.trace == []


def test_disable_history(server, lm):
    server.responder = lambda r: r.reply(answer="ok")
    with dsr.context(disable_history=True):
        lm("one")
    assert len(lm.history) == 0
    lm("two")
    assert len(lm.history) == 1


def test_track_usage_is_off_by_default_and_usage_tracker_is_the_blocks_tracker(server, lm):
    from dsr_core.tracking import UsageTracker

    assert dsr.settings.get("track_usage") is False and dsr.settings.get("usage_tracker") is None
    tracker = UsageTracker()
    with dsr.context(usage_tracker=tracker):  # DSPy's way of setting a tracker by hand
        assert dsr.settings.get("usage_tracker") is tracker
        server.responder = lambda r: r.reply(answer="ok")
        predict = dsr.Predict("question -> answer")
        predict.set_lm(lm)
        predict(question="q")
    assert dsr.settings.get("usage_tracker") is None
    assert list(tracker.get_total_tokens()) == ["test-model"]


def test_snapshot_and_restore_put_the_process_defaults_back():
    saved = dsr.settings.snapshot()
    dsr.configure(num_threads=3, lm=dsr.LM("a"))
    assert dsr.settings.num_threads == 3 and saved["num_threads"] != 3
    with dsr.context(num_threads=5):
        dsr.settings.restore(saved)
        assert dsr.settings.num_threads == 5  # what a context overrides stays its own
    assert dsr.settings.num_threads == saved["num_threads"] and dsr.settings.lm is saved["lm"]
    saved["num_threads"] = 99
    assert dsr.settings.num_threads != 99  # a snapshot is a copy
    with pytest.raises(TypeError, match="unknown setting"):
        dsr.settings.restore({"no_such_setting": 1})
