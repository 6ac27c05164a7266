"""The LM client: any OpenAI-compatible chat-completions endpoint, through ``openai.AsyncOpenAI``.

What it adds to the SDK: retries with exponential backoff and jitter that honour Retry-After, client-side
limits (requests in flight, requests and tokens per minute), the two-tier cache, usage accounting and a
call history, typed errors (a refused connection is an ``LMConnectionError``, a rejected key an
``LMAuthenticationError``: never a timeout or a bare status code) and a cheap readiness probe. The api key
lives in one private attribute; it never reaches a repr, a log line, the history, the cache key, saved state
or an error message.

Requests go through the SDK's documented raw-request path (``client.post(..., cast_to=httpx.Response)``):
the SDK still owns auth, the base URL, headers and error mapping, but the request body is plain JSON we
build once instead of passing through the SDK's typed transform of every parameter (measured here: 0.75
ms per call against 1.37 ms for ``chat.completions.with_raw_response.create``, test server included).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import json
import logging
import math
import os
import random
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from . import settings as _settings
from ._async import run_sync
from .base_lm import GLOBAL_HISTORY, LM_CLASS_STATE_KEY, BaseLM, LMResponse, record_history
from .cache import Cache, cache_enabled_globally, get_default_cache, request_key
from .callback import active_callbacks, observed
from .errors import (
    ContextWindowExceededError,
    LMAuthenticationError,
    LMConnectionError,
    LMError,
    LMNotFoundError,
    LMRateLimitError,
    LMTimeoutError,
)
from .limits import InFlightLimiter, RateLimiter
from .primitives import Usage

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 120.0  # seconds
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the SDK's, when no api_base is given
PROBE_TIMEOUT = 10.0  # seconds, at most: a probe says "not ready" quickly rather than wait out a long timeout
PROBE_MESSAGES = [{"role": "user", "content": "ping"}]

# (base URL, model, key variable, key fingerprint) of every successful probe in this process. The fingerprint
# is an HMAC under a per-process random salt, so a changed key is probed again and the key itself is not kept.
_probed: set[tuple[str, str, str, str]] = set()
_PROBE_SALT = os.urandom(16)

__all__ = ["GLOBAL_HISTORY", "LM", "BaseLM", "LMResponse", "format_history", "inspect_history"]
DSPY_LM_CLASS = "dspy.clients.lm.LM"  # the class a saved OpenAI-compatible LM names, so DSPy loads it too
# request parameters a saved LM state may carry into LM(**kwargs)
SAMPLING_KEYS = frozenset(
    {
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "response_format",
        "user",
    }
)

_CONTEXT_WINDOW_MARKERS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
)


POOL_SIZE = 32  # connections per SDK client; see _LoopState
_open_closers: list[tuple[asyncio.AbstractEventLoop, Any]] = []


class _LoopState:
    """The SDK clients of one event loop (an httpx connection pool is bound to the loop that made it).

    One client per ``POOL_SIZE`` connections, used in turn: httpcore scans every connection of its pool
    when a request starts and ends, so one pool of 256 connections spends most of the loop's time in that
    scan; eight pools of 32 do the same work at a fraction of the cost (bench/RESULTS.md).
    """

    def __init__(self, clients: list[openai.AsyncOpenAI], loop: asyncio.AbstractEventLoop) -> None:
        self.clients = clients
        self.loop = loop
        self._next = 0
        self._closer: Any = None

    async def start_closer(self) -> None:
        """Close the clients when the loop shuts down.

        ``asyncio.run`` (and dsr's own loop at exit) finalize every live async generator before closing the
        loop, so a generator parked at ``yield`` is the one hook that runs inside a loop's shutdown; without
        it aiohttp sessions of finished loops are left open and complain.
        """

        async def closer() -> Any:
            try:
                yield
            finally:
                for client in self.clients:
                    try:
                        await client.close()
                    except Exception:  # noqa: BLE001 - closing is best effort at shutdown
                        pass

        self._closer = closer()
        await self._closer.__anext__()
        # Held here, not only by the LM: an LM dropped before its loop ends must still close its clients at
        # the loop's shutdown (a generator collected with its sessions would leave them unclosed).
        _open_closers[:] = [(lp, gen) for lp, gen in _open_closers if not lp.is_closed()]
        _open_closers.append((self.loop, self._closer))

    def client(self) -> openai.AsyncOpenAI:
        self._next = (self._next + 1) % len(self.clients)  # one loop, one thread: no lock needed
        return self.clients[self._next]


def _strip_userinfo(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class LM(BaseLM):
    """An OpenAI-compatible chat model.

    ``LM("gpt-4o-mini")`` talks to OpenAI with ``OPENAI_API_KEY``; ``LM("my-model",
    api_base="http://localhost:8000/v1")`` talks to vLLM, a llama.cpp server or anything compatible.
    A DSPy-style ``"openai/"`` prefix on the model name is accepted and dropped.

    A subclass may override ``forward``/``aforward`` (BaseLM's contract): calls then go through them, and
    ``super().forward(...)`` is the request to the endpoint (cache and retries included).
    """

    model_type = "chat"

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        *,
        temperature: float = 0.0,
        max_tokens: int = 1000,
        num_retries: int = 5,
        timeout: float = 120.0,
        max_concurrency: int = 64,
        rpm: float | None = None,
        tpm: float | None = None,
        cache: bool = True,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        retry_backoff: tuple[float, float] = (0.5, 30.0),
        cache_store: Cache | None = None,
        callbacks: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.model = model.removeprefix("openai/")
        self.callbacks = list(callbacks or [])
        cls = type(self)
        # a subclass's own forward/aforward must be used: those calls take BaseLM's path
        self._overridden = cls.forward is not LM.forward or cls.aforward is not LM.aforward
        self.api_base = api_base or os.environ.get("OPENAI_BASE_URL")
        self.api_key_env = api_key_env
        self.__api_key = api_key  # name-mangled: not an attribute anybody copies by accident
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.num_retries = num_retries
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.rpm = rpm
        self.tpm = tpm
        self.cache = cache
        self.retry_backoff = retry_backoff
        self.kwargs = kwargs  # extra sampling parameters sent with every request (top_p, stop, seed, ...)
        self._cache_store = cache_store
        self._in_flight = InFlightLimiter(max_concurrency)
        self._rpm = RateLimiter(rpm) if rpm else None
        self._tpm = RateLimiter(tpm) if tpm else None
        self._states: dict[int, _LoopState] = {}
        self._states_lock = threading.Lock()
        # usage per thread: each is only ever written by its own thread, so no lock is needed
        self._usage_local = threading.local()
        self._usages: list[Usage] = []
        self.history: deque[dict[str, Any]] = deque(maxlen=_settings.get("max_history"))

    # -- identity ----------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        base = f", api_base={_strip_userinfo(self.api_base)!r}" if self.api_base else ""
        return f"LM(model={self.model!r}{base}, temperature={self.temperature}, max_tokens={self.max_tokens})"

    def dump_state(self) -> dict[str, Any]:
        """Settings worth saving with a program, in DSPy's layout (DSPy rebuilds it as its own LM).

        Never the api key; the base URL without credentials. ``api_key_env`` is dsr's alone (DSPy would
        send it as a request parameter): program files keep it in their metadata.
        """
        state: dict[str, Any] = {
            LM_CLASS_STATE_KEY: DSPY_LM_CLASS
            if type(self) is LM
            else f"{type(self).__module__}.{type(self).__qualname__}",
            "model": f"openai/{self.model}",
            "model_type": "chat",
            "cache": self.cache,
            "num_retries": self.num_retries,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.api_base:
            state["api_base"] = _strip_userinfo(self.api_base)
        state.update({k: v for k, v in self.kwargs.items() if isinstance(v, (str, int, float, bool, list, type(None)))})
        return state

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LM:
        """An LM from saved state: dsr's, or DSPy's (``openai/`` models, ``max_completion_tokens``)."""
        params: dict[str, Any] = {k: state[k] for k in ("model", "api_base", "api_key_env") if state.get(k)}
        for key in ("temperature", "max_tokens", "num_retries", "cache"):
            if state.get(key) is not None:
                params[key] = state[key]
        if "max_tokens" not in params and state.get("max_completion_tokens") is not None:
            params["max_tokens"] = state["max_completion_tokens"]
        params.update({k: v for k, v in state.items() if k in SAMPLING_KEYS and v is not None})
        return cls(**params)

    def __deepcopy__(self, memo: dict[int, Any]) -> LM:
        return self  # an LM is a shared client: deep-copying a program shares it, as DSPy does

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("an LM is not picklable (it holds an api key and live connections); save dump_state()")

    def copy(self, **changes: Any) -> LM:
        """A new LM with some settings changed (its own limits, history and clients; the key is kept)."""
        params = {
            "model": self.model,
            "api_base": self.api_base,
            "api_key": self.__api_key,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "num_retries": self.num_retries,
            "timeout": self.timeout,
            "max_concurrency": self.max_concurrency,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "cache": self.cache,
            "api_key_env": self.api_key_env,
            "retry_backoff": self.retry_backoff,
            "cache_store": self._cache_store,
            "callbacks": self.callbacks,
            **self.kwargs,
        }
        params.update(changes)
        return type(self)(**params)

    @property
    def usage(self) -> Usage:
        """Total usage of this LM across all threads and loops (tokens are spend: cache hits cost none)."""
        total = Usage()
        for usage in list(self._usages):
            total.add(usage)
        return total

    @property
    def in_flight(self) -> int:
        return self._in_flight.in_flight

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _api_key(self) -> str:
        key = self.__api_key or os.environ.get(self.api_key_env)
        if key:
            return key
        if self.api_base:
            return "not-needed"  # local servers (vLLM, llama.cpp) accept any key
        raise LMAuthenticationError(
            f"no API key for model {self.model!r}: pass api_key=..., set {self.api_key_env}, "
            "or give api_base= for a local OpenAI-compatible server",
            model=self.model,
        )

    def _key_source(self) -> str:
        """Where the key sent comes from, for error messages: the variable's name, never the key."""
        if self.__api_key:
            return f"the key passed as api_key= (not {self.api_key_env})"
        if os.environ.get(self.api_key_env):
            return f"the key in {self.api_key_env}"
        return f"{self.api_key_env} is not set, so a placeholder key was sent"

    def _endpoint(self) -> str:
        """The base URL for messages: without credentials in it."""
        return (_strip_userinfo(self.api_base) or DEFAULT_BASE_URL).rstrip("/")

    async def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(id(loop))
        if state is not None and state.loop is loop:
            return state
        import openai  # deferred: importing the SDK costs ~0.45 s

        pools = max(1, math.ceil(self.max_concurrency / POOL_SIZE))
        per_pool = math.ceil(self.max_concurrency / pools)
        key = self._api_key()
        clients = [
            openai.AsyncOpenAI(
                api_key=key,
                base_url=self.api_base,
                max_retries=0,
                timeout=self.timeout,
                http_client=_http_client(openai, per_pool, self.timeout),
            )
            for _ in range(pools)
        ]
        state = _LoopState(clients, loop)
        await state.start_closer()
        with self._states_lock:  # taken once per event loop, never per call
            for loop_id, old in list(self._states.items()):
                if old.loop.is_closed():
                    self._states.pop(loop_id, None)
            self._states[id(loop)] = state
        return state

    def _count(self, usage: Usage) -> None:
        self._thread_usage().add(usage)

    def _thread_usage(self) -> Usage:
        usage = getattr(self._usage_local, "usage", None)
        if usage is None:
            usage = self._usage_local.usage = Usage()
            self._usages.append(usage)  # list.append is atomic
        return usage

    def _cache(self) -> Cache | None:
        if not (self.cache and _settings.get("cache") and cache_enabled_globally()):
            return None
        return self._cache_store or get_default_cache()

    def build_request(self, messages: list[dict[str, Any]], *, n: int = 1, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,  # not max_completion_tokens: llama.cpp's server ignores that one
            **self.kwargs,
        }
        body.update({k: v for k, v in overrides.items() if v is not None})
        if n != 1:
            body["n"] = n
        return body

    # -- calling -----------------------------------------------------------------------------------------------
    async def acall(  # type: ignore[override]
        self,
        prompt: list[dict[str, Any]] | str | None = None,
        messages: list[dict[str, Any]] | None = None,
        *,
        n: int = 1,
        rollout_id: Any = None,
        cache: bool | None = None,
        **overrides: Any,
    ) -> LMResponse:
        """One chat completion. ``rollout_id`` makes an otherwise identical request a distinct cache entry.

        ``prompt`` is a string (one user message) or the list of messages; ``messages=`` as in DSPy.
        """
        if self._overridden:
            if cache is not None:
                overrides["cache"] = cache
            return await BaseLM.acall(self, prompt, messages, n=n, rollout_id=rollout_id, **overrides)
        if messages is None:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if messages is None:
            raise TypeError("LM.acall needs a prompt or messages")
        callbacks = active_callbacks(self)
        if not callbacks:
            return await self._complete(messages, n, rollout_id, cache, True, overrides)
        inputs = {"prompt": prompt if isinstance(prompt, str) else None, "messages": messages, "kwargs": overrides}
        with observed(callbacks, "lm", self, inputs) as call:
            response = await self._complete(messages, n, rollout_id, cache, True, overrides)
            call.outputs = list(response.texts)
        return response

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        n: int,
        rollout_id: Any,
        cache: bool | None,
        record: bool,
        overrides: dict[str, Any],
    ) -> LMResponse:
        """The request itself: cache, limits, retries; recorded in usage and history when ``record``."""
        body = self.build_request(messages, n=n, **overrides)
        store = self._cache() if cache is not False else None
        key = None
        if store is not None:
            key = request_key(body if rollout_id is None else {**body, "rollout_id": rollout_id})
            hit = store.get(key)  # the cache hands out only entries of the right shape (cache.entry_problem)
            if hit is not None:
                response = LMResponse(
                    texts=list(hit["texts"]),  # copies: a caller editing its response must not edit the cache
                    usage=Usage(lm_calls=1, cached_calls=1),
                    cached=True,
                    finish_reasons=list(hit.get("finish_reasons", [])),
                )
                if record:
                    self._record(body, response, rollout_id, hit.get("usage"))
                return response
        started = time.perf_counter()
        response = await self._request_with_retries(body)
        response.latency = time.perf_counter() - started
        if store is not None and key is not None:
            store.put(
                key,
                {
                    "texts": list(response.texts),
                    "finish_reasons": list(response.finish_reasons),
                    "usage": {
                        "prompt_tokens": response.usage.prompt_tokens,
                        "completion_tokens": response.usage.completion_tokens,
                    },
                },
            )
        if record:
            self._record(body, response, rollout_id, None)
        return response

    def __call__(  # type: ignore[override]
        self,
        prompt: list[dict[str, Any]] | str | None = None,
        messages: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Synchronous call, DSPy style: returns the outputs (the completion texts)."""
        if self._overridden and type(self).forward is not LM.forward:
            return BaseLM.__call__(self, prompt, messages, **kwargs)
        return list(run_sync(self.acall(prompt, messages, **kwargs)))

    # -- BaseLM's contract -------------------------------------------------------------------------------------
    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """The endpoint's chat completion (a dict in OpenAI's shape), cached and retried like every call."""
        return run_sync(self._forward(prompt, messages, kwargs))

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        if type(self).forward is not LM.forward:  # a subclass's synchronous forward is the implementation
            return await asyncio.to_thread(self.forward, prompt=prompt, messages=messages, **kwargs)
        return await self._forward(prompt, messages, kwargs)

    async def _forward(self, prompt: str | None, messages: list[dict[str, Any]] | None, kwargs: dict[str, Any]) -> Any:
        kwargs = dict(kwargs)
        n = int(kwargs.pop("n", 1) or 1)
        rollout_id = kwargs.pop("rollout_id", None)
        cache = kwargs.pop("cache", None)
        rendered = messages if messages is not None else [{"role": "user", "content": prompt or ""}]
        response = await self._complete(rendered, n, rollout_id, cache, False, kwargs)
        return {
            "model": self.model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": response.finish_reasons[i] if i < len(response.finish_reasons) else None,
                }
                for i, text in enumerate(response.texts)
            ],
            "usage": {
                "prompt_tokens": response.usage.prompt_tokens,
                "completion_tokens": response.usage.completion_tokens,
                "total_tokens": response.usage.total_tokens,
            },
            "cache_hit": response.cached,
        }

    def _record(self, body: dict[str, Any], response: LMResponse, rollout_id: Any, cached_usage: Any) -> None:
        self._thread_usage().add(response.usage)
        if _settings.get("disable_history"):
            return
        entry = {
            "model": self.model,
            "messages": body["messages"],
            "outputs": response.texts,
            "usage": response.usage.to_dict() if not response.cached else (cached_usage or {}),
            "cached": response.cached,
            "latency": response.latency,
            "timestamp": time.time(),
            "rollout_id": rollout_id,
        }
        record_history(self, entry)  # deque.append is atomic: no lock

    async def _attempt(
        self,
        state: _LoopState,
        body: dict[str, Any],
        estimate: float,
        *,
        timeout: float | None = None,
        warn_cut: bool = True,
    ) -> LMResponse:
        """One request under the LM's limits; raises the SDK's errors (or a malformed body's) untranslated."""
        import httpx2

        if self._rpm is not None:
            await self._rpm.wait(1)
        if self._tpm is not None:
            await self._tpm.wait(estimate)
        await self._in_flight.acquire()
        try:
            client = state.client()
            if timeout is None:
                raw = await client.post("/chat/completions", body=body, cast_to=httpx2.Response)
            else:
                options: Any = {"timeout": timeout}
                raw = await client.post("/chat/completions", body=body, cast_to=httpx2.Response, options=options)
            response = _parse_completion(raw.content, self.model, warn_cut=warn_cut)
            if self._tpm is not None:
                self._tpm.refund(estimate - response.usage.total_tokens)
            return response
        finally:
            self._in_flight.release()

    async def _request_with_retries(self, body: dict[str, Any]) -> LMResponse:
        import openai

        state = await self._state()
        estimate = _estimate_tokens(body)
        initial, ceiling = self.retry_backoff
        last_error: Exception | None = None
        for attempt in range(self.num_retries + 1):
            retry_after: float | None = None
            try:
                return await self._attempt(state, body, estimate)
            except openai.RateLimitError as exc:
                last_error, retry_after = exc, _retry_after(exc.response)
            except openai.APITimeoutError as exc:
                last_error = exc
            except openai.APIConnectionError as exc:
                last_error = exc
            except openai.APIStatusError as exc:
                if exc.status_code >= 500 or exc.status_code in (408, 409):
                    last_error, retry_after = exc, _retry_after(exc.response)
                else:
                    raise self._fatal(exc) from None
            except _MalformedResponseError as exc:
                last_error = exc
            if attempt == self.num_retries:
                break
            delay = min(ceiling, initial * 2**attempt) * random.uniform(0.5, 1.0)
            if retry_after is not None:  # the server knows best; only absurd values are cut
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
            log.info(
                "LM %s: attempt %d failed (%s); retrying in %.2fs",
                self.model,
                attempt + 1,
                self._redact(_connection_problem(last_error, self._endpoint()) or _describe(last_error)),
                delay,
            )
            await asyncio.sleep(delay)
        raise self._exhausted(last_error)

    def _fatal(self, exc: Exception) -> LMError:
        """The typed error for a status that retrying cannot fix."""
        status = getattr(exc, "status_code", None)
        message = self._redact(_describe(exc))
        if status == 400 and any(m in message.lower() for m in _CONTEXT_WINDOW_MARKERS):
            return ContextWindowExceededError(
                f"{self.model}: request exceeds the context window: {message}", status_code=status, model=self.model
            )
        if status in (401, 403):
            said = self._redact(_server_message(exc))
            what = "rejected the API key" if status == 401 else "denied the request"
            return LMAuthenticationError(
                f"{self.model}: {self._endpoint()} {what} ({status}); {self._key_source()}: {said}",
                status_code=status,
                model=self.model,
            )
        if status == 404:
            said = self._redact(_server_message(exc))
            return LMNotFoundError(
                f"{self.model}: {self._endpoint()} answered 404 ({said}); check the model name and that "
                "api_base is the API root (usually ending in /v1)",
                status_code=status,
                model=self.model,
            )
        return LMError(f"{self.model}: {message}", status_code=status, model=self.model)

    def _exhausted(self, exc: Exception | None) -> LMError:
        import openai

        tries = self.num_retries + 1
        message = self._redact(_describe(exc))
        if isinstance(exc, openai.RateLimitError):
            return LMRateLimitError(
                f"{self.model}: still rate limited after {tries} attempts: {message}", status_code=429, model=self.model
            )
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
            return self._connection_error(
                exc, f"{tries} attempts", f"no answer within {self.timeout}s on {tries} attempts"
            )
        status = getattr(exc, "status_code", None)
        return LMError(f"{self.model}: failed after {tries} attempts: {message}", status_code=status, model=self.model)

    def _connection_error(self, exc: Exception, attempts: str, timed_out: str) -> LMError:
        """LMConnectionError, or LMTimeoutError when the request really timed out.

        The SDK's class is not evidence: its aiohttp transport reports every aiohttp connection error, a
        refused connection included, as a connect timeout. The exception's causes say what happened.
        """
        import openai

        url = self._endpoint()
        problem = _connection_problem(exc, url)
        if problem is None and isinstance(exc, openai.APITimeoutError):
            return LMTimeoutError(f"{self.model}: {url}: {timed_out}", model=self.model)
        if problem is None:
            cause = " ".join(_describe(_root_cause(exc)).split())  # one line (aiohttp's messages span several)
            problem = f"connection to {url} failed: {self._redact(cause)}"
        return LMConnectionError(f"{self.model}: {problem} ({attempts})", model=self.model)

    # -- readiness ---------------------------------------------------------------------------------------------
    async def aprobe(self, *, timeout: float | None = None) -> None:
        """Check, before a run, that the endpoint answers this model with this key; raise one clear error if not.

        First ``GET /models``, which costs no tokens: when it lists the model, that is the whole probe. Otherwise
        one chat request (one short user message, ``max_tokens=1``, temperature 0), one attempt, within
        ``timeout`` seconds (default: the LM's timeout, at most ``PROBE_TIMEOUT``), so a refused connection
        fails at once instead of after the full backoff. It bypasses the response cache on purpose: a cached
        answer says nothing about the endpoint. It is counted in neither ``usage`` nor ``history`` (it does go
        through the rpm/tpm/in-flight limits, being a real request). A success is remembered in the process per
        base URL, model and key, so probing again costs nothing. A 429 or a 5xx means reachable with the key
        accepted: it passes (with a warning for a 5xx), unremembered; the run's own retries and its check that
        not every example failed the same way deal with a server that stays broken.

        Raises LMConnectionError, LMAuthenticationError (also when ``api_key_env`` names a variable that is not
        set), LMNotFoundError, LMTimeoutError, or LMError for any other failure (another 4xx, a body that is
        not a chat completion).
        """
        import openai

        if not self.__api_key and self.api_key_env != DEFAULT_API_KEY_ENV and not os.environ.get(self.api_key_env):
            # explicitly named, yet unset: the calls would send a placeholder key, which only a local server takes
            raise LMAuthenticationError(
                f"{self.model}: api_key_env names {self.api_key_env}, which is not set", model=self.model
            )
        state = await self._state()  # raises for a missing key without api_base
        sent = state.clients[0].api_key  # the key the clients send (read from the environment when they were made)
        fingerprint = hmac.new(_PROBE_SALT, sent.encode(), hashlib.sha256).hexdigest()
        memo = (self._endpoint(), self.model, self.api_key_env, fingerprint)
        if memo in _probed:
            return
        limit = min(self.timeout, PROBE_TIMEOUT) if timeout is None else timeout
        if await self._listed(state, limit):
            _probed.add(memo)
            return
        body = self.build_request([dict(m) for m in PROBE_MESSAGES], max_tokens=1, temperature=0.0)
        try:
            # max_tokens=1 cuts every reply: no warning about that
            await self._attempt(state, body, _estimate_tokens(body), timeout=limit, warn_cut=False)
        except openai.RateLimitError:
            log.info("LM %s: the probe was rate limited; the endpoint is reachable", self.model)
            return
        except openai.APIConnectionError as exc:
            raise self._connection_error(exc, "probe, 1 attempt", f"no answer to a probe within {limit}s") from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:  # reachable, key accepted; the run's retries deal with a struggling server
                log.warning("LM %s: the probe got %s; going on", self.model, self._redact(_describe(exc)))
                return
            raise self._fatal(exc) from None
        except _MalformedResponseError as exc:
            raise LMError(
                f"{self.model}: {self._endpoint()} answered the probe with something that is not a chat "
                f"completion: {self._redact(str(exc))}",
                model=self.model,
            ) from None
        _probed.add(memo)

    async def _listed(self, state: _LoopState, timeout: float) -> bool:
        """The free half of the probe: ``GET /models``. True when the endpoint lists this model (reachable,
        the key accepted, the model served: no chat request needed). A refused connection or a rejected
        key raise here; an endpoint without the route, or a list without the model, leave it to the chat
        request (some servers route models they do not list)."""
        import httpx2
        import openai

        try:
            raw = await state.client().get("/models", cast_to=httpx2.Response, options={"timeout": timeout})
            listed = {str(m.get("id")) for m in json.loads(raw.content).get("data", []) if isinstance(m, dict)}
        except openai.APIConnectionError as exc:
            raise self._connection_error(exc, "probe, 1 attempt", f"no answer to a probe within {timeout}s") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise self._fatal(exc) from None
            return False
        except (ValueError, AttributeError, TypeError):
            return False
        return self.model in listed

    def probe(self, *, timeout: float | None = None) -> None:
        """Synchronous ``aprobe``."""
        run_sync(self.aprobe(timeout=timeout))

    def _redact(self, text: str) -> str:
        """``text`` without the key: the one configured now and any the clients were made with before."""
        keys = {self.__api_key or os.environ.get(self.api_key_env) or ""}
        keys.update(state.clients[0].api_key for state in list(self._states.values()))
        for key in sorted(keys - {"", "not-needed"}, key=len, reverse=True):
            text = text.replace(key, "***")
        return text


class _MalformedResponseError(Exception):
    pass


def _parse_completion(content: bytes, model: str, *, warn_cut: bool = True) -> LMResponse:
    try:
        data = json.loads(content)
        choices = data["choices"]
        texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        finish = [c.get("finish_reason") or "" for c in choices]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        snippet = content[:200].decode("utf-8", "replace")
        raise _MalformedResponseError(f"malformed completion body ({exc.__class__.__name__}): {snippet!r}") from None
    if not texts:
        raise _MalformedResponseError("completion has no choices")
    usage = data.get("usage") or {}
    if warn_cut and "length" in finish:
        log.warning("LM %s: a reply was cut at max_tokens; raise max_tokens if outputs fail to parse", model)
    return LMResponse(
        texts=texts,
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            lm_calls=1,
        ),
        finish_reasons=finish,
    )


def _retry_after(response: Any) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    return f"{exc.__class__.__name__}: {exc}"


def _server_message(exc: Exception) -> str:
    """The message in an OpenAI-style error body, else the SDK's description."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str) and message:
            return message
    return _describe(exc)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (members of exception groups included)."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending and len(seen) < 32:
        link = pending.pop(0)
        if any(link is s for s in seen):
            continue
        seen.append(link)
        if isinstance(link, BaseExceptionGroup):
            pending.extend(link.exceptions)
        cause = link.__cause__ or link.__context__
        if cause is not None:
            pending.append(cause)
    return seen


def _root_cause(exc: BaseException) -> BaseException:
    return _causes(exc)[-1]


_RESETS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _connection_problem(exc: BaseException, url: str) -> str | None:
    """What went wrong on the wire, read from the causes of a transport error; None for a timeout or if unclear."""
    for link in _causes(exc):
        if isinstance(link, TimeoutError):
            return None  # a real timeout: aiohttp's and anyio's timeouts are TimeoutErrors
        code = getattr(link, "errno", None)
        if isinstance(link, ConnectionRefusedError) or code == errno.ECONNREFUSED:
            return f"cannot connect to {url}: connection refused"
        if isinstance(link, socket.gaierror):
            return f"cannot connect to {url}: host name {urlsplit(url).hostname!r} not resolved"
        if isinstance(link, _RESETS) or code == errno.ECONNRESET:
            return f"connection to {url} reset by the server"
        if type(link).__name__ == "ServerDisconnectedError" or str(link).startswith("Server disconnected"):
            return f"{url} closed the connection without answering"  # aiohttp's class; httpcore's wording
    return None


def _estimate_tokens(body: dict[str, Any]) -> float:
    chars = sum(len(str(m.get("content", ""))) for m in body["messages"])
    return chars / 4 + body.get("max_tokens", 0) * body.get("n", 1)


def _http_client(openai: Any, connections: int, timeout: float) -> Any:
    """The SDK's aiohttp transport when aiohttp is installed (measured about twice as fast per request as
    httpcore at hundreds of requests in flight, bench/RESULTS.md); the SDK's httpx default otherwise."""
    limits = _httpx_limits(connections)
    if os.environ.get("DSR_HTTP_TRANSPORT", "aiohttp") == "aiohttp":
        try:
            import aiohttp  # noqa: F401

            return openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
        except ImportError:
            pass
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)


def _httpx_limits(connections: int) -> Any:
    import httpx2

    return httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)


def format_history(entries: list[dict[str, Any]]) -> str:
    """The text ``inspect_history`` prints for these history entries."""
    blocks = []
    for entry in entries:
        lines = [
            f"[{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(entry['timestamp']))}] "
            f"{entry['model']}{' (cached)' if entry.get('cached') else ''}"
        ]
        for message in entry["messages"] or []:
            lines.append(f"{message['role'].capitalize()} message:\n\n{message['content']}\n")
        for i, text in enumerate(entry["outputs"]):
            lines.append(f"Response{f' {i + 1}' if len(entry['outputs']) > 1 else ''}:\n\n{text}\n")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def inspect_history(n: int = 1, lm: BaseLM | None = None) -> str:
    """Print (and return) the last ``n`` calls: messages and replies, DSPy's ``inspect_history``."""
    text = format_history(list(lm.history if lm is not None else GLOBAL_HISTORY)[-n:])
    print(text)  # noqa: T201 - this function exists to print
    return text
