import asyncio
import json
import logging
import time

import pytest

import dsr_core as dsr

MESSAGES = [{"role": "user", "content": "hello"}]


def fixed(text):
    return lambda request: text


async def test_basic_call_usage_and_history(server, lm):
    server.responder = fixed("hi there")
    response = await lm.acall(MESSAGES)
    assert response.texts == ["hi there"] and not response.cached
    assert response.usage.lm_calls == 1 and response.usage.prompt_tokens > 0
    body = server.requests[-1]
    assert body["model"] == "test-model" and body["max_tokens"] == 1000 and body["temperature"] == 0.0
    assert "max_completion_tokens" not in body
    assert lm.usage.lm_calls == 1
    assert lm.history[-1]["outputs"] == ["hi there"]


async def test_retries_on_500_then_succeeds(server, lm):
    server.inject("500", 2)
    assert (await lm.acall(MESSAGES)).texts
    assert server.stats.requests == 3


async def test_retry_after_is_honoured(server):
    lm = dsr.LM("m", api_base=server.url, retry_backoff=(0.01, 0.02))
    server.inject("429", 1, retry_after=0.6)
    started = time.perf_counter()
    await lm.acall(MESSAGES)
    assert time.perf_counter() - started >= 0.6
    assert server.stats.requests == 2


async def test_rate_limit_exhausted_is_typed(server):
    lm = dsr.LM("m", api_base=server.url, num_retries=2, retry_backoff=(0.01, 0.02))
    server.inject("429", 5, retry_after=0)
    with pytest.raises(dsr.LMRateLimitError, match="after 3 attempts"):
        await lm.acall(MESSAGES)
    assert server.stats.requests == 3


async def test_timeout_is_retried_then_typed(server):
    lm = dsr.LM("m", api_base=server.url, timeout=0.3, num_retries=1, retry_backoff=(0.01, 0.02))
    server.inject("timeout", 1)
    assert (await lm.acall(MESSAGES)).texts  # one timeout, then success
    server.inject("timeout", 2)
    with pytest.raises(dsr.LMTimeoutError):
        await lm.acall([{"role": "user", "content": "other"}])


@pytest.mark.parametrize("fault", ["garbage", "truncated"])
async def test_malformed_bodies_are_retried(server, lm, fault):
    server.inject(fault, 1)
    assert (await lm.acall(MESSAGES)).texts
    assert server.stats.requests == 2


async def test_malformed_bodies_exhausted_raise_lm_error(server):
    lm = dsr.LM("m", api_base=server.url, num_retries=1, retry_backoff=(0.01, 0.02))
    server.inject("garbage", 2)
    with pytest.raises(dsr.LMError, match="malformed completion body"):
        await lm.acall(MESSAGES)


async def test_context_window_error_is_typed_and_not_retried(server, lm):
    server.inject("400", 1, message="This model's maximum context length is 4096 tokens. However, you requested 9000")
    with pytest.raises(dsr.ContextWindowExceededError):
        await lm.acall(MESSAGES)
    assert server.stats.requests == 1


async def test_max_concurrency_bounds_requests_in_flight(server):
    server.latency = 0.05
    lm = dsr.LM("m", api_base=server.url, max_concurrency=4, cache=False)
    await asyncio.gather(*(lm.acall([{"role": "user", "content": str(i)}]) for i in range(40)))
    assert server.stats.max_in_flight == 4


def test_max_concurrency_holds_across_threads_and_loops(server):
    """Several threads, each with its own event loop, share one LM budget (Prefect's thread runner)."""
    import threading

    server.latency = 0.05
    lm = dsr.LM("m", api_base=server.url, max_concurrency=3, cache=False)

    def work(k):
        async def many():
            await asyncio.gather(*(lm.acall([{"role": "user", "content": f"{k}-{i}"}]) for i in range(10)))

        asyncio.run(many())

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.stats.requests == 30
    assert server.stats.max_in_flight == 3


async def test_rpm_limit_spaces_requests(server):
    lm = dsr.LM("m", api_base=server.url, rpm=600, cache=False)  # 10/s, burst of one second
    started = time.perf_counter()
    await asyncio.gather(*(lm.acall([{"role": "user", "content": str(i)}]) for i in range(25)))
    elapsed = time.perf_counter() - started
    assert 1.3 <= elapsed < 3.0  # 25 requests at 10/s with a 10-request burst: ~1.5 s


async def test_tpm_limit_throttles_by_tokens(server):
    server.responder = fixed("x")
    # each request is ~100 prompt chars/4 + max_tokens 10 ~ 35 tokens; 2100 tpm = 35 tokens/s
    lm = dsr.LM("m", api_base=server.url, tpm=2100, max_tokens=10, cache=False)
    started = time.perf_counter()
    await asyncio.gather(*(lm.acall([{"role": "user", "content": f"{i:03d}" + "y" * 97}]) for i in range(4)))
    assert time.perf_counter() - started >= 1.0


async def test_api_key_never_leaks(server, caplog):
    secret = "sk-test-SECRET-0123456789"
    lm = dsr.LM("m", api_base=server.url, api_key=secret, retry_backoff=(0.01, 0.02))
    caplog.set_level(logging.DEBUG)
    server.inject("500", 1)
    await lm.acall(MESSAGES)
    assert secret not in repr(lm)
    assert secret not in json.dumps(lm.dump_state())
    assert secret not in json.dumps(list(lm.history), default=str)
    assert secret not in caplog.text
    assert secret not in json.dumps(dsr.Predict("q -> a", lm=lm).dump_state())
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(lm)


async def test_api_key_from_environment_and_missing_key_error(server, monkeypatch):
    with pytest.raises(dsr.LMError, match="no API key"):
        await dsr.LM("gpt-4o-mini").acall(MESSAGES)
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    lm = dsr.LM("m", api_base=server.url, api_key_env="MY_KEY")
    await lm.acall(MESSAGES)
    assert lm.dump_state()["api_key_env"] == "MY_KEY"


def test_credentials_in_base_url_are_stripped_from_state():
    lm = dsr.LM("m", api_base="http://user:pw@localhost:8000/v1")
    assert lm.dump_state()["api_base"] == "http://localhost:8000/v1"
    assert "pw" not in repr(lm)


def test_sync_call_and_inspect_history(server, lm, capsys):
    server.responder = fixed("sync reply")
    assert lm("hello") == ["sync reply"]
    text = dsr.inspect_history(1)
    assert "sync reply" in text and "User message" in text
    assert "sync reply" in capsys.readouterr().out


async def test_n_completions(server, lm):
    server.responder = lambda r: [r.reply(answer=f"a{i}") for i in range(3)]
    pred = await dsr.Predict("question -> answer", lm=lm).acall(question="q", config={"n": 3})
    assert [c["answer"] for c in pred.completions] == ["a0", "a1", "a2"]
    assert pred.answer == "a0"
    assert server.requests[-1]["n"] == 3


def test_openai_prefix_is_dropped():
    assert dsr.LM("openai/gpt-4o-mini").model == "gpt-4o-mini"
