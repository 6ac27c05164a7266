import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

import dsr_core as dsr
from dsr_core.cache import Cache, entry_problem, request_key

MESSAGES = [{"role": "user", "content": "hello"}]


async def test_second_identical_call_is_a_cached_hit(server, lm):
    first = await lm.acall(MESSAGES)
    second = await lm.acall(MESSAGES)
    assert not first.cached and second.cached
    assert second.texts == first.texts
    assert server.stats.requests == 1
    assert second.usage.cached_calls == 1 and second.usage.total_tokens == 0  # a hit is not spend
    assert lm.usage.lm_calls == 2 and lm.usage.cached_calls == 1


async def test_key_ignores_api_key_and_base_url(server, isolated_cache):
    a = dsr.LM("m", api_base=server.url, api_key="k1")
    b = dsr.LM("m", api_base=server.url.replace("127.0.0.1", "localhost"), api_key="k2")
    await a.acall(MESSAGES)
    assert (await b.acall(MESSAGES)).cached
    dsr.cache.get_default_cache().flush()
    for path in isolated_cache.rglob("*.json"):
        text = path.read_text()
        assert "k1" not in text and "127.0.0.1" not in text


async def test_sampling_parameters_and_rollout_id_change_the_key(server, lm):
    await lm.acall(MESSAGES)
    assert not (await lm.acall(MESSAGES, temperature=0.7)).cached
    assert not (await lm.acall(MESSAGES, temperature=0.7, rollout_id=1)).cached
    assert (await lm.acall(MESSAGES, temperature=0.7, rollout_id=1)).cached
    assert "rollout_id" not in server.requests[-1]  # never sent to the endpoint
    assert server.stats.requests == 3


async def test_disable_per_lm_per_call_and_globally(server, monkeypatch):
    no_cache = dsr.LM("m", api_base=server.url, cache=False)
    await no_cache.acall(MESSAGES)
    await no_cache.acall(MESSAGES)
    assert server.stats.requests == 2
    lm = dsr.LM("m", api_base=server.url)
    await lm.acall(MESSAGES)  # fills the cache
    assert not (await lm.acall(MESSAGES, cache=False)).cached
    dsr.configure(cache=False)
    assert not (await lm.acall(MESSAGES)).cached
    dsr.configure(cache=True)
    monkeypatch.setenv("DSR_CACHE", "0")
    assert not (await lm.acall(MESSAGES)).cached


async def test_corrupt_entry_is_a_miss_not_a_crash(server, isolated_cache):
    lm = dsr.LM("m", api_base=server.url)
    await lm.acall(MESSAGES)
    dsr.cache.get_default_cache().flush()
    entries = list(isolated_cache.rglob("*.json"))
    assert len(entries) == 1
    entries[0].write_text('{"texts": ["trunc')
    store = Cache(isolated_cache)  # empty memory tier
    fresh = dsr.LM("m", api_base=server.url, cache_store=store)
    response = await fresh.acall(MESSAGES)
    assert not response.cached and server.stats.requests == 2
    store.flush()
    again = Cache(isolated_cache)
    assert again.get(request_key(fresh.build_request(MESSAGES))) is not None  # rewritten by the new call


# Valid JSON that is not an entry as LM.acall writes it: hand edits, other tools, older formats.
WRONG_SHAPES = {
    "a list": [["hello back"]],
    "a string": "hello back",
    "null": None,
    "an empty object": {},
    "no texts": {"finish_reasons": ["stop"], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    "texts not a list": {"texts": "hello back"},
    "no text at all": {"texts": []},
    "a text that is not a string": {"texts": [{"content": "hello back"}]},
    "finish_reasons not a list": {"texts": ["hello back"], "finish_reasons": "stop"},
    "usage not an object": {"texts": ["hello back"], "usage": [1, 1]},
    "tokens not integers": {"texts": ["hello back"], "usage": {"prompt_tokens": "many", "completion_tokens": 1}},
    "a raw completion body": {"choices": [{"message": {"role": "assistant", "content": "hello back"}}]},
}


@pytest.mark.parametrize("entry", list(WRONG_SHAPES.values()), ids=list(WRONG_SHAPES))
async def test_entry_of_the_wrong_shape_is_a_miss_and_is_replaced(server, isolated_cache, caplog, entry):
    lm = dsr.LM("m", api_base=server.url)
    key = request_key(lm.build_request(MESSAGES))
    path = isolated_cache / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(entry))
    assert entry_problem(entry) is not None
    with caplog.at_level(logging.WARNING, logger="dsr_core.cache"):
        response = await lm.acall(MESSAGES)
    assert not response.cached and response.texts and server.stats.requests == 1
    assert [r.levelno for r in caplog.records if str(path) in r.getMessage()] == [logging.WARNING]  # said once
    dsr.cache.get_default_cache().flush()
    assert entry_problem(json.loads(path.read_text())) is None  # the fresh response replaced it on disk
    fresh = dsr.LM("m", api_base=server.url, cache_store=Cache(isolated_cache))  # a new process: disk only
    again = await fresh.acall(MESSAGES)
    assert again.cached and again.texts == response.texts and server.stats.requests == 1


def test_a_value_of_the_wrong_shape_is_never_put(tmp_path, caplog):
    cache = Cache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="dsr_core.cache"):
        cache.put("k", {"choices": []})
    cache.flush()
    assert cache.get("k") is None and not list(tmp_path.rglob("*.json"))
    assert "not caching k" in caplog.text


async def test_editing_a_response_leaves_the_cached_entry_alone(server, lm):
    first = await lm.acall(MESSAGES)
    first.texts.append("edited")
    hit = await lm.acall(MESSAGES)
    assert hit.cached and hit.texts == first.texts[:1]
    hit.texts[0] = "edited too"
    assert (await lm.acall(MESSAGES)).texts == first.texts[:1]


def test_memory_tier_is_bounded_lru(tmp_path):
    cache = Cache(tmp_path, memory_entries=2, disk=False)
    for key in "abc":
        cache.put(key, {"texts": [key]})
    assert cache.get("a") is None and cache.get("c") == {"texts": ["c"]}


def test_cache_is_shared_across_processes(server, isolated_cache):
    script = textwrap.dedent(f"""
        import dsr_core as dsr
        lm = dsr.LM("m", api_base="{server.url}")
        pred = dsr.Predict("question -> answer", lm=lm)(question="shared")
        print(pred.usage.cached_calls)
    """)
    env = {**os.environ, "DSR_CACHE_DIR": str(isolated_cache)}

    def run():
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert run() == "0"
    assert run() == "1"
    assert server.stats.requests == 1


def test_a_reply_holding_a_lone_surrogate_is_cached_on_disk_and_read_back(tmp_path):
    from dsr_core.cache import Cache

    value = {"texts": ["odd \ud800 answer"], "finish_reasons": ["stop"]}
    writer = Cache(tmp_path / "c")
    writer.put("k" * 64, value)
    writer.flush()
    assert Cache(tmp_path / "c").get("k" * 64) == value  # a new process reads it from disk


def test_request_keys_are_the_sha256_of_the_canonical_json_older_versions_wrote():
    """The key is stable across versions (existing disk caches keep hitting) and covers what orjson declines."""
    import hashlib

    def canonical(request):
        text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    request = dsr.LM("m", temperature=0.7, top_p=0.95, stop=["\n\n"]).build_request(
        [{"role": "system", "content": "Fields: `q` (str) — é 😀\u2028\x1f"}, *MESSAGES], n=3
    )
    assert request_key(request) == canonical(request)
    assert request_key({**request, "messages": MESSAGES}) != request_key(request)
    biased = {**request, "logit_bias": {50256: -100}}  # integer keys: orjson declines them, json writes "50256"
    assert request_key(biased) == canonical(biased) != request_key(request)
