import asyncio
import json
import logging
import socket
import time

import pytest

import dsr_core as dsr
from dsr_core.lm import PROBE_MESSAGES, BaseLM
from dsr_core.runtime import runtime
from dsr_core.testing.server import LMTestServer

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
    # 25 requests at 10/s with a 10-request burst take at least 1.5 s (how much longer is the machine's business)
    assert time.perf_counter() - started >= 1.3
    assert server.stats.requests == 25


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
    assert "api_key_env" not in lm.dump_state()  # DSPy would send it as a request parameter
    state = dsr.Predict("q -> a", lm=lm).dump_state()
    assert state["metadata"]["lm_api_key_env"] == {"self": "MY_KEY"}
    restored = dsr.Predict("q -> a").load_state(state)
    assert restored.lm.api_key_env == "MY_KEY" and (await restored.lm.acall(MESSAGES)).texts


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


def test_dspy_provider_prefixes_go_to_the_providers_openai_compatible_endpoint(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    claude = dsr.LM("anthropic/claude-sonnet-4-5", temperature=0.3)
    assert (claude.model, claude.api_base, claude.api_key_env) == (
        "claude-sonnet-4-5",
        "https://api.anthropic.com/v1/",
        "ANTHROPIC_API_KEY",
    )
    state = claude.dump_state()
    assert state["model"] == "anthropic/claude-sonnet-4-5"  # as DSPy writes it, so DSPy loads it as Anthropic's
    again = dsr.LM.load_state(state)
    assert (again.model, again.api_base, again.api_key_env) == (claude.model, claude.api_base, claude.api_key_env)
    assert claude.copy(temperature=0.0).qualified_model == "anthropic/claude-sonnet-4-5"
    openai_model = dsr.LM("openai/gpt-4o-mini")
    assert (openai_model.api_base, openai_model.api_key_env, openai_model.key_required) == (
        None,
        "OPENAI_API_KEY",
        True,
    )
    local = dsr.LM("ollama_chat/llama3.2")
    assert (local.model, local.api_base, local.key_required) == ("llama3.2", "http://localhost:11434/v1", False)
    # api_base and api_key_env given win over the provider's
    proxied = dsr.LM("gemini/gemini-2.5-flash", api_base="http://127.0.0.1:9/v1", api_key_env="PROXY_KEY")
    assert (proxied.model, proxied.api_base, proxied.api_key_env) == (
        "gemini-2.5-flash",
        "http://127.0.0.1:9/v1",
        "PROXY_KEY",
    )


def test_a_hosted_provider_without_its_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(dsr.LMAuthenticationError, match="set GROQ_API_KEY"):
        dsr.LM("groq/llama-3.1-8b-instant", num_retries=0)("hello")


def test_the_model_is_sent_without_a_provider_prefix_and_other_names_as_they_are(server):
    server.responder = lambda request: request.reply(answer="ok")
    for name, sent in [
        ("together_ai/meta-llama/Llama-3.3-70B", "meta-llama/Llama-3.3-70B"),
        ("hosted_vllm/Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B"),
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),  # not a provider: a name
    ]:
        dsr.Predict("question -> answer", lm=dsr.LM(name, api_base=server.url, cache=False))(question="q")
        assert server.requests[-1]["model"] == sent


@pytest.mark.parametrize(
    "model, message",
    [
        ("bedrock/anthropic.claude-3-haiku", "bedrock has no OpenAI-compatible API.*api_base="),
        ("meta-llama/Llama-3.1-8B-Instruct", "'meta-llama' is not a provider dsr knows.*give api_base="),
        ("hosted_vllm/Qwen/Qwen2.5-7B", "a hosted_vllm model needs api_base="),
    ],
)
def test_a_model_name_that_cannot_be_routed_is_an_error_when_the_lm_is_made(model, message, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(dsr.LMConfigError, match=message):
        dsr.LM(model)


# -- transport and endpoint failures, typed ------------------------------------------------------------------

TRANSPORTS = ["aiohttp", "httpx"]


@pytest.fixture
def refused_url():
    """A port that refuses connections: bound (so nothing else takes it) but not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_connection_is_a_connection_error_not_a_timeout(refused_url, monkeypatch, transport):
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    lm = dsr.LM("m", api_base=refused_url, num_retries=2, retry_backoff=(0.01, 0.02))
    with pytest.raises(dsr.LMConnectionError) as caught:
        await lm.acall(MESSAGES)
    assert not isinstance(caught.value, dsr.LMTimeoutError)
    assert str(caught.value) == f"m: cannot connect to {refused_url}: connection refused (3 attempts)"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unresolvable_host_is_a_connection_error(monkeypatch, transport):
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    lm = dsr.LM("m", api_base="http://no-such-host.invalid/v1", num_retries=0)
    with pytest.raises(dsr.LMConnectionError, match="host name 'no-such-host.invalid' not resolved"):
        await lm.acall(MESSAGES)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("fault", "said"), [("reset", "reset by the server"), ("disconnect", "closed the connection without answering")]
)
async def test_dropped_connections_are_retried_then_connection_errors(server, monkeypatch, transport, fault, said):
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    lm = dsr.LM("m", api_base=server.url, num_retries=1, retry_backoff=(0.01, 0.02))
    server.inject(fault, 1)
    assert (await lm.acall(MESSAGES)).texts  # one dropped connection, then an answer
    server.inject(fault, 2)
    with pytest.raises(dsr.LMConnectionError, match=said) as caught:
        await lm.acall([{"role": "user", "content": "other"}])
    assert server.url in str(caught.value) and str(caught.value).endswith("(2 attempts)")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_real_timeout_stays_a_timeout(server, monkeypatch, transport):
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    lm = dsr.LM("m", api_base=server.url, timeout=0.3, num_retries=1, retry_backoff=(0.01, 0.02))
    server.inject("timeout", 2)
    with pytest.raises(dsr.LMTimeoutError, match=r"no answer within 0.3s on 2 attempts"):
        await lm.acall(MESSAGES)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rejected_key_is_typed_not_retried_and_names_the_variable(monkeypatch, caplog, transport):
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    secret = "sk-wrong-SECRET-0123456789"
    monkeypatch.setenv("TEAM_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with LMTestServer(api_key="sk-right") as srv:  # it echoes the key it was sent in its 401 message
        lm = dsr.LM("m", api_base=srv.url, api_key_env="TEAM_KEY", retry_backoff=(0.01, 0.02))
        with pytest.raises(dsr.LMAuthenticationError) as caught:
            await lm.acall(MESSAGES)
        assert srv.stats.requests == 1
        monkeypatch.setenv("TEAM_KEY", "sk-right")
        assert (await dsr.LM("m", api_base=srv.url, api_key_env="TEAM_KEY").acall(MESSAGES)).texts
        with pytest.raises(dsr.LMAuthenticationError) as again:  # the first LM's clients keep the key they had
            await lm.acall([{"role": "user", "content": "other"}])
    assert secret not in str(again.value)  # redacted although the variable holds another key now
    message = str(caught.value)
    assert caught.value.status_code == 401
    assert "rejected the API key (401)" in message and "the key in TEAM_KEY" in message
    assert secret not in message and secret not in caplog.text


async def test_forbidden_is_an_authentication_error_and_a_passed_key_is_named_too(server):
    secret = "sk-passed-SECRET-0123456789"
    lm = dsr.LM("m", api_base=server.url, api_key=secret)
    server.inject("403", 1, message=f"key {secret} may not use model m")
    with pytest.raises(dsr.LMAuthenticationError) as caught:
        await lm.acall(MESSAGES)
    assert server.stats.requests == 1
    message = str(caught.value)
    assert "denied the request (403)" in message and "api_key= (not OPENAI_API_KEY)" in message
    assert secret not in message and "may not use model m" in message


async def test_unknown_model_is_not_found_and_not_retried():
    with LMTestServer(models=["known-model"]) as srv:
        lm = dsr.LM("unknown-model", api_base=srv.url, retry_backoff=(0.01, 0.02))
        with pytest.raises(dsr.LMNotFoundError, match="The model `unknown-model` does not exist") as caught:
            await lm.acall(MESSAGES)
        assert srv.stats.requests == 1 and caught.value.status_code == 404
        assert (await dsr.LM("known-model", api_base=srv.url).acall(MESSAGES)).texts


# -- the probe ------------------------------------------------------------------------------------------------


def test_a_listed_model_is_probed_without_any_chat_request(server, lm):
    lm.probe()  # GET /models lists test-model: reachable, key accepted, model served
    assert server.stats.requests == 0
    assert lm.usage.lm_calls == 0 and not lm.history


def test_probe_of_an_unlisted_model_sends_one_tiny_uncached_request_and_is_remembered(server):
    lm = dsr.LM("unlisted-model", api_base=server.url)  # some servers route models they do not list
    lm.probe()
    assert server.stats.requests == 1
    body = server.requests[-1]
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert lm.usage.lm_calls == 0 and not lm.history  # not part of what a run reports
    assert dsr.cache.get_default_cache().disk_stats()["entries"] == 0  # nor of the cache
    lm.probe()
    lm.copy(temperature=0.7).probe()  # same endpoint, model and key
    assert server.stats.requests == 1
    dsr.LM("other-model", api_base=server.url).probe()
    assert server.stats.requests == 2
    runtime().reset()  # forgets the probes that succeeded
    lm.probe()
    assert server.stats.requests == 3


async def test_probe_bypasses_the_response_cache(server):
    lm = dsr.LM("unlisted-model", api_base=server.url)
    await lm.acall(PROBE_MESSAGES, max_tokens=1, temperature=0.0)  # the probe's request, now cached
    await lm.aprobe()
    assert server.stats.requests == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_probe_of_a_refused_port_fails_at_once(refused_url, monkeypatch, transport):
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    lm = dsr.LM("m", api_base=refused_url)  # default retries and backoff: a probe does not use them
    with pytest.raises(dsr.LMConnectionError) as caught:
        lm.probe()
    assert str(caught.value) == f"m: cannot connect to {refused_url}: connection refused (probe, 1 attempt)"


async def test_probe_with_a_rejected_key_names_the_variable_not_the_key(monkeypatch):
    secret = "sk-wrong-SECRET-0123456789"
    monkeypatch.setenv("TEAM_KEY", secret)
    with LMTestServer(api_key="sk-right") as srv:
        lm = dsr.LM("m", api_base=srv.url, api_key_env="TEAM_KEY")
        with pytest.raises(dsr.LMAuthenticationError, match="TEAM_KEY") as caught:
            await lm.aprobe()
        assert secret not in str(caught.value)
        with pytest.raises(dsr.LMAuthenticationError):
            await lm.aprobe()  # a failed probe is not remembered: it asks again
        assert srv.stats.requests == 0  # the model listing refused the key: no chat request was sent
        monkeypatch.setenv("TEAM_KEY", "sk-right")
        await dsr.LM("m", api_base=srv.url, api_key_env="TEAM_KEY").aprobe()
        assert srv.stats.requests == 1  # "m" is not listed: the chat request confirms it


async def test_probe_of_an_explicit_key_variable_that_is_unset(server, monkeypatch):
    monkeypatch.delenv("OPENAI_KEY_X", raising=False)
    lm = dsr.LM("m", api_base=server.url, api_key_env="OPENAI_KEY_X")
    with pytest.raises(dsr.LMAuthenticationError, match="^m: api_key_env names OPENAI_KEY_X, which is not set$"):
        await lm.aprobe()
    assert server.stats.requests == 0
    await dsr.LM("m", api_base=server.url).aprobe()  # the default variable, unset: a local server needs no key


async def test_probe_of_an_unknown_model():
    with LMTestServer(models=["known-model"]) as srv:
        with pytest.raises(dsr.LMNotFoundError, match="unknown-model"):
            await dsr.LM("unknown-model", api_base=srv.url).aprobe()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_probe_timeout(server, monkeypatch, transport):
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    server.inject("timeout", 1)
    with pytest.raises(dsr.LMTimeoutError, match="no answer to a probe within 0.3s"):
        await dsr.LM("m", api_base=server.url).aprobe(timeout=0.3)
    assert server.stats.requests == 1


async def test_probe_makes_one_attempt_and_a_429_or_5xx_counts_as_reachable(server, caplog):
    lm = dsr.LM("unlisted-model", api_base=server.url)
    server.inject("500", 1, message="model is loading")
    await lm.aprobe()  # reachable, key accepted: the run's retries deal with a struggling server
    assert server.stats.requests == 1 and "model is loading" in caplog.text
    server.inject("429", 1)
    await lm.aprobe()  # reachable and the key is fine; rate limits are the calls' retries' business
    await lm.aprobe()  # ...but neither is remembered as a success: asked again
    assert server.stats.requests == 3
    server.inject("400", 1, message="bad request")
    lm2 = dsr.LM("other-unlisted", api_base=server.url)
    with pytest.raises(dsr.LMError, match="bad request") as caught:
        await lm2.aprobe()
    assert caught.value.status_code == 400


class EchoLM(BaseLM):
    """A custom LM with DSPy's contract: forward returns an OpenAI-style response."""

    def __init__(self):
        super().__init__("echo")
        self.seen = []

    def forward(self, prompt=None, messages=None, **kwargs):
        self.seen.append((messages, kwargs))
        return {
            "model": "echo-1",
            "choices": [{"message": {"content": "[[ ## answer ## ]]\necho\n\n[[ ## completed ## ]]"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }


def test_a_custom_base_lm_runs_predict_and_keeps_history():
    lm = EchoLM()
    prediction = dsr.Predict("question -> answer", lm=lm)(question="q")
    assert prediction.answer == "echo"
    assert lm.seen[0][0][0]["role"] == "system" and "question" in lm.seen[0][0][-1]["content"]
    assert lm("hi") == ["[[ ## answer ## ]]\necho\n\n[[ ## completed ## ]]"]
    entry = lm.history[-1]
    assert entry["prompt"] == "hi" and entry["response_model"] == "echo-1" and entry["usage"]["prompt_tokens"] == 3
    assert lm.dump_state()["_dspy_lm_class"].endswith("EchoLM")


def test_outputs_with_more_than_text_are_dicts():
    class ReasoningLM(EchoLM):
        def forward(self, prompt=None, messages=None, **kwargs):
            response = super().forward(prompt, messages, **kwargs)
            response["choices"][0]["message"]["reasoning_content"] = "thought"
            return response

    [output] = ReasoningLM()("hi")
    assert output["reasoning_content"] == "thought" and output["text"].startswith("[[ ## answer")


async def test_an_lm_subclass_forward_is_used_by_predict(server):
    server.responder = lambda r: r.reply(answer="from server")

    class CountingLM(dsr.LM):
        calls = 0

        def forward(self, prompt=None, messages=None, **kwargs):
            type(self).calls += 1
            return super().forward(prompt=prompt, messages=messages, **kwargs)

    lm = CountingLM("m", api_base=server.url)
    assert (await dsr.Predict("question -> answer", lm=lm).acall(question="q")).answer == "from server"
    assert dsr.Predict("question -> answer", lm=lm)(question="q2").answer == "from server"
    assert CountingLM.calls == 2 and server.stats.requests == 2 and len(lm.history) == 2


async def test_plain_lm_response_is_dspy_list_of_outputs(server, lm):
    server.responder = fixed("hi there")
    response = await lm.acall(prompt="hello")
    assert response == ["hi there"] and response[0] == "hi there" and len(response) == 1
    assert response.texts == ["hi there"]
    assert lm(messages=[{"role": "user", "content": "x"}]) == ["hi there"]
    state = lm.dump_state()
    assert state["model"] == "openai/test-model" and state["_dspy_lm_class"] == "dspy.clients.lm.LM"
    assert dsr.LM.load_state(state).model == "test-model"


async def test_both_transports_send_the_sdks_headers(server, monkeypatch):
    """The aiohttp path posts without the SDK's request builder, with the headers the SDK would send."""
    seen = {}
    for transport in TRANSPORTS:
        monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
        lm = dsr.LM("m", api_base=server.url, api_key="sk-header-test", cache=False)
        await lm.acall([{"role": "user", "content": transport}])
        seen[transport] = dict(server.stats.last_headers)
    aio, httpx = seen["aiohttp"], seen["httpx"]
    assert aio["authorization"] == httpx["authorization"] == "Bearer sk-header-test"
    for name in ("user-agent", "content-type", "accept", "x-stainless-lang", "x-stainless-package-version"):
        assert aio[name] == httpx[name], name


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_body_with_integer_keys_is_sent_as_json_has_it(server, monkeypatch, transport):
    """OpenAI's ``logit_bias`` maps token ids to biases: integer keys, which the json module writes as strings
    and orjson declines (the fast path falls back)."""
    monkeypatch.setenv("DSR_HTTP_TRANSPORT", transport)
    server.responder = fixed("biased")
    lm = dsr.LM("m", api_base=server.url, cache=False)
    assert (await lm.acall(MESSAGES, logit_bias={50256: -100, 7: 5})).texts == ["biased"]
    assert server.requests[-1]["logit_bias"] == {"50256": -100, "7": 5}


def test_a_reply_only_the_json_module_reads_still_parses():
    """NaN is not JSON, but Python's json module reads it, and some servers write it (orjson declines it)."""
    from dsr_core.lm.response import MalformedResponseError, parse_completion

    body = b'{"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}], "usage": {"x": NaN}}'
    assert parse_completion(body, "m").texts == ["ok"]
    with pytest.raises(MalformedResponseError, match="malformed completion body"):
        parse_completion(b'{"choices": [', "m")
