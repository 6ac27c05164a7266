"""The runtime: one object for the background loop, worker threads, default cache, held clients and history."""

import asyncio
import gc
import threading

import dsr_core as dsr
from dsr_core.cache import get_default_cache
from dsr_core.lm import GLOBAL_HISTORY
from dsr_core.runtime import runtime


def fixed(text):
    return lambda request: text


def clients_on(loop):
    return [client for held in runtime().held() if held.loop is loop for client in held.clients]


def test_reset_closes_every_client_and_the_next_call_opens_new_ones(server, lm):
    server.responder = fixed("first")
    assert lm("hello") == ["first"]
    clients = clients_on(runtime().loop())
    assert clients and not any(client.is_closed() for client in clients)
    runtime().reset()
    assert all(client.is_closed() for client in clients) and runtime().held() == ()
    server.responder = fixed("second")
    assert lm("hello again") == ["second"]
    fresh = clients_on(runtime().loop())
    assert fresh and not set(map(id, fresh)) & set(map(id, clients))


def test_reset_drops_the_default_cache_history_and_probes_after_the_writes_reach_disk(server, lm, isolated_cache):
    assert lm("hello")
    lm.probe()
    first = get_default_cache()
    assert GLOBAL_HISTORY and GLOBAL_HISTORY is runtime().history and runtime().probed
    runtime().reset()
    assert not GLOBAL_HISTORY and not runtime().probed
    assert get_default_cache() is not first and len(list(isolated_cache.rglob("*.json"))) == 1
    assert lm("hello")  # a hit in the new cache's disk tier
    assert server.stats.requests == 1 and GLOBAL_HISTORY[-1]["cached"]


def test_clients_of_a_loop_that_ended_were_closed_and_are_let_go(server):
    async def call_and_drop_the_lm():
        lm = dsr.LM("m", api_base=server.url)
        assert (await lm.acall("hi")).texts
        return asyncio.get_running_loop(), clients_on(asyncio.get_running_loop())

    ended, clients = asyncio.run(call_and_drop_the_lm())
    assert clients and all(client.is_closed() for client in clients)  # at the loop's shutdown, the LM gone
    assert dsr.LM("m", api_base=server.url)("hi again")  # new clients on the background loop
    assert not any(held.loop is ended for held in runtime().held())


def test_close_cancels_waiting_calls_stops_the_loop_and_a_later_call_starts_again(server, lm):
    arrived, release = threading.Event(), threading.Event()

    def blocking(request):
        arrived.set()
        release.wait()
        return "late"

    server.responder = blocking
    outcome = []

    def call():
        try:
            outcome.append(lm("hello"))
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome.append(type(exc).__name__)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        arrived.wait()
        loop = runtime().loop()
        clients = clients_on(loop)
        runtime().close()
        caller.join()
    finally:
        release.set()
    assert outcome == ["CancelledError"]
    assert loop.is_closed() and all(client.is_closed() for client in clients)
    server.responder = fixed("again")
    assert lm("hello") == ["again"] and runtime().loop() is not loop


async def test_synchronous_forwards_and_tools_run_on_the_runtime_threads():
    class Where(dsr.Module):
        def forward(self):
            return dsr.Prediction(thread=threading.current_thread().name)

    def where() -> str:
        return threading.current_thread().name

    assert (await Where().acall()).thread.startswith("dsr-forward")
    assert (await dsr.Tool(where).acall()).startswith("dsr-forward")
    assert runtime().forward_pool() is runtime().forward_pool()


async def test_an_endpoint_that_rejects_json_schema_is_remembered_on_the_runtime_until_reset(server, lm):
    server.inject("400", 1, message="response_format json_schema is not supported")
    server.responder = lambda r: r.reply(answer="ok")
    predict = dsr.Predict("question -> answer", adapter=dsr.JSONAdapter())
    assert (await predict.acall(question="q", lm=lm)).answer == "ok"
    assert runtime().json_schema_rejected == {(lm.api_base, lm.model)}
    assert not [name for name in vars(lm) if "schema" in name]  # nothing written onto the LM
    same_endpoint = dsr.LM(lm.model, api_base=lm.api_base)
    await predict.acall(question="q2", lm=same_endpoint)
    other_model = dsr.LM("other-model", api_base=lm.api_base)
    await predict.acall(question="q3", lm=other_model)
    assert [b["response_format"]["type"] for b in server.requests] == [
        "json_schema",
        "json_object",
        "json_object",  # known for this endpoint and model, whichever LM object asks
        "json_schema",  # another model on it is asked with the schema
    ]
    runtime().reset()
    assert not runtime().json_schema_rejected
    await predict.acall(question="q4", lm=lm)
    assert server.requests[-1]["response_format"]["type"] == "json_schema"


def test_reset_puts_back_the_collector_thresholds_a_holder_raised(monkeypatch):
    from dsr_core.collector import fewer_collections

    monkeypatch.delenv("DSR_GC_THRESHOLD", raising=False)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        with fewer_collections():
            assert gc.get_threshold() == (50_000, 10, 10) and runtime().collector.holders == 1
            runtime().reset()  # e.g. a test that ended with an evaluation still holding it
            assert gc.get_threshold() == (700, 10, 10) and runtime().collector.holders == 0
            with fewer_collections():  # a new holder raises it again; the old one's exit does not count
                assert runtime().collector.holders == 1
            assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_threshold() == (700, 10, 10) and runtime().collector.holders == 0
    finally:
        gc.set_threshold(*before)
