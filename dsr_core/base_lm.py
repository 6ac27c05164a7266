"""BaseLM: the contract a custom LM implements, DSPy's.

Subclass it and implement ``forward(prompt=None, messages=None, **kwargs)`` (and, for real concurrency,
``async def aforward`` with the same arguments) returning an OpenAI-style chat completion: an object or a
dict with ``choices[i].message.content``, and optionally ``usage`` and ``model``. ``lm(...)`` then returns
one output per choice (a string, or a dict when a choice carries more than text: reasoning, tool calls,
logprobs), records the call in the history and runs the callbacks. Predict and the adapters call
``await lm.acall(messages, n=..., **config)``, which runs ``aforward`` (or ``forward`` in a worker thread)
and returns an ``LMResponse``. dsr's OpenAI-compatible ``LM`` is one subclass, with its own fast path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import settings as _settings
from .callback import active_callbacks, observed
from .primitives import Usage
from .tracking import current_callers

GLOBAL_HISTORY: deque[dict[str, Any]] = deque(maxlen=10_000)
LM_CLASS_STATE_KEY = "_dspy_lm_class"  # DSPy's marker of the LM class in saved state


@dataclass(eq=False)
class LMResponse:
    """The outcome of one LM call: one text per choice, and the usage (zero tokens if cached).

    It is also the sequence of outputs DSPy's ``lm(...)`` returns (``response[0]``, ``len(response)``,
    ``response == ["..."]``): strings, or dicts for choices that carry more than text.
    """

    texts: list[str]
    usage: Usage
    cached: bool = False
    finish_reasons: list[str] = field(default_factory=list)
    latency: float = 0.0
    outputs: list[Any] | None = None

    def _outputs(self) -> list[Any]:
        return self.outputs if self.outputs is not None else self.texts

    def __len__(self) -> int:
        return len(self._outputs())

    def __getitem__(self, index: Any) -> Any:
        return self._outputs()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._outputs())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self._outputs() == other
        if isinstance(other, LMResponse):
            return (self.texts, self.usage, self.cached, self.outputs) == (
                other.texts,
                other.usage,
                other.cached,
                other.outputs,
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _value(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for a mapping, ``obj.key`` otherwise (responses come as dicts or SDK objects)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def completion_outputs(response: Any, logprobs: bool = False) -> list[Any]:
    """DSPy's outputs of a chat completion: per choice its text, or a dict when it carries more."""
    outputs: list[dict[str, Any]] = []
    for choice in _value(response, "choices", []) or []:
        message = _value(choice, "message")
        output: dict[str, Any] = {"text": _value(message, "content") if message is not None else _value(choice, "text")}
        if reasoning := _value(message, "reasoning_content"):
            output["reasoning_content"] = reasoning
        if logprobs:
            output["logprobs"] = _value(choice, "logprobs")
        if calls := _value(message, "tool_calls"):
            output["tool_calls"] = calls
        outputs.append(output)
    if all(len(o) == 1 for o in outputs):
        return [o["text"] for o in outputs]
    return outputs


def completion_usage(response: Any, cached: bool = False) -> Usage:
    usage = _value(response, "usage") or {}
    if cached:
        return Usage(lm_calls=1, cached_calls=1)
    return Usage(
        prompt_tokens=int(_value(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(_value(usage, "completion_tokens", 0) or 0),
        lm_calls=1,
    )


def record_history(lm: Any, entry: dict[str, Any]) -> None:
    """Record one call in the global history, the LM's and every calling module's, unless
    ``settings.disable_history``. Module histories keep at most ``settings.max_history_size`` entries."""
    if _settings.get("disable_history"):
        return
    GLOBAL_HISTORY.append(entry)
    lm.history.append(entry)
    callers = current_callers.get()
    if callers:
        limit = _settings.get("max_history_size")
        if not limit:
            return
        for module in callers:
            history = module.__dict__.get("history")
            if history is None:
                history = module.__dict__["history"] = []
            if len(history) >= limit:
                del history[: len(history) - limit + 1]
            history.append(entry)


def _text(output: Any) -> str:
    if isinstance(output, dict):
        return output.get("text") or ""
    return output or ""


class BaseLM:
    """Base class for LMs: implement ``forward`` (and ``aforward``) returning an OpenAI-style response."""

    def __init__(
        self,
        model: str,
        model_type: str = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool = True,
        callbacks: list[Any] | None = None,
        num_retries: int = 3,
        **kwargs: Any,
    ) -> None:
        self.model = model
        self.model_type = model_type
        self.cache = cache
        self.callbacks = list(callbacks or [])
        self.num_retries = num_retries
        self.kwargs: dict[str, Any] = dict(temperature=temperature, max_tokens=max_tokens, **kwargs)
        self.history: deque[dict[str, Any]] = deque(maxlen=_settings.get("max_history"))

    # -- the contract ------------------------------------------------------------------------------------------
    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """Return an OpenAI-style chat completion for one request."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward() or aforward()")

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        """Async ``forward``; by default ``forward`` in a worker thread (contextvars travel with it)."""
        if type(self).forward is BaseLM.forward:
            raise NotImplementedError(f"{type(self).__name__} must implement forward() or aforward()")
        return await asyncio.to_thread(self.forward, prompt=prompt, messages=messages, **kwargs)

    # -- calling -----------------------------------------------------------------------------------------------
    def __call__(
        self,
        prompt: str | list[dict[str, Any]] | None = None,
        messages: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """One call, DSPy style: the list of outputs (strings, or dicts for choices with more than text)."""
        if isinstance(prompt, list):
            prompt, messages = None, prompt
        callbacks = active_callbacks(self)
        if not callbacks:
            return self._finish(self.forward(prompt=prompt, messages=messages, **kwargs), prompt, messages, kwargs)
        with observed(callbacks, "lm", self, {"prompt": prompt, "messages": messages, "kwargs": kwargs}) as call:
            response = self._finish(self.forward(prompt=prompt, messages=messages, **kwargs), prompt, messages, kwargs)
            call.outputs = response.outputs
        return response.outputs  # type: ignore[return-value]

    async def acall(
        self,
        prompt: str | list[dict[str, Any]] | None = None,
        messages: list[dict[str, Any]] | None = None,
        *,
        n: int = 1,
        rollout_id: Any = None,
        **kwargs: Any,
    ) -> LMResponse:
        """One call from async code (what the adapters use); the response is also the list of outputs."""
        if isinstance(prompt, list):
            prompt, messages = None, prompt
        if n != 1:
            kwargs["n"] = n
        if rollout_id is not None:
            kwargs["rollout_id"] = rollout_id
        callbacks = active_callbacks(self)
        if not callbacks:
            raw = await self.aforward(prompt=prompt, messages=messages, **kwargs)
            return self._finish(raw, prompt, messages, kwargs)
        with observed(callbacks, "lm", self, {"prompt": prompt, "messages": messages, "kwargs": kwargs}) as call:
            raw = await self.aforward(prompt=prompt, messages=messages, **kwargs)
            response = self._finish(raw, prompt, messages, kwargs)
            call.outputs = response.outputs
        return response

    def _finish(
        self, raw: Any, prompt: str | None, messages: list[dict[str, Any]] | None, kwargs: dict[str, Any]
    ) -> LMResponse:
        """Outputs, usage and the history entry of one raw response."""
        cached = bool(_value(raw, "cache_hit", False))
        merged = {**self.kwargs, **kwargs}
        outputs = completion_outputs(raw, logprobs=bool(merged.get("logprobs")))
        usage = completion_usage(raw, cached)
        response = LMResponse(
            texts=[_text(o) for o in outputs],
            usage=usage,
            cached=cached,
            finish_reasons=[_value(c, "finish_reason") or "" for c in _value(raw, "choices", []) or []],
            outputs=outputs,
        )
        entry = {
            "prompt": prompt,
            "messages": messages if messages is not None else [{"role": "user", "content": prompt or ""}],
            "kwargs": {k: v for k, v in kwargs.items() if not k.startswith("api_")},
            "response": raw,
            "outputs": response.texts,
            "usage": usage.to_dict(),
            "cost": None,
            "cached": cached,
            "latency": 0.0,
            "timestamp": time.time(),
            "uuid": str(uuid.uuid4()),
            "model": self.model,
            "response_model": _value(raw, "model"),
            "model_type": self.model_type,
            "rollout_id": kwargs.get("rollout_id"),
        }
        self._count(usage)
        record_history(self, entry)
        return response

    def _count(self, usage: Usage) -> None:
        """Add one call's usage to the LM's own totals (dsr's LM keeps them; BaseLM keeps none)."""

    # -- state and copies --------------------------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        """What it takes to rebuild this LM (``load_state``), in DSPy's layout; never an api key."""
        return {
            LM_CLASS_STATE_KEY: f"{type(self).__module__}.{type(self).__qualname__}",
            "model": self.model,
            "model_type": self.model_type,
            "cache": self.cache,
            "num_retries": self.num_retries,
            **{k: v for k, v in self.kwargs.items() if k not in ("api_key", LM_CLASS_STATE_KEY)},
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> BaseLM:
        state = {k: v for k, v in state.items() if k != LM_CLASS_STATE_KEY}
        return cls(**state)

    def copy(self, **changes: Any) -> BaseLM:
        """A shallow copy with some attributes or request parameters changed; its own history and kwargs."""
        import copy as copy_module

        new = copy_module.copy(self)
        new.history = deque(maxlen=self.history.maxlen)
        new.callbacks = list(self.callbacks)
        new.kwargs = dict(self.kwargs)
        for key, value in changes.items():
            if key in new.kwargs or not hasattr(self, key):
                if value is None:
                    new.kwargs.pop(key, None)
                else:
                    new.kwargs[key] = value
            if hasattr(self, key):
                setattr(new, key, value)
        return new

    def inspect_history(self, n: int = 1) -> str:
        """Print (and return) this LM's last ``n`` calls."""
        from .lm import inspect_history

        return inspect_history(n, lm=self)
