"""BaseLM: the contract a custom LM implements, DSPy's.

Subclass it and implement ``forward(prompt=None, messages=None, **kwargs)`` (and, for real concurrency,
``async def aforward`` with the same arguments) returning an OpenAI-style chat completion: an object or a
dict with ``choices[i].message.content``, and optionally ``usage`` and ``model``. ``lm(...)`` then returns
one output per choice (a string, or a dict when a choice carries more than text: reasoning, tool calls,
logprobs), records the call in the history and runs the callbacks. Predict and the adapters call
``await lm.acall(messages, n=..., **config)``, which runs ``aforward`` (or ``forward`` in a worker thread)
and returns an ``LMResponse``. dsr's OpenAI-compatible ``LM`` is one subclass, with its own fast path.

A subclass that overrides ``__call__`` instead (DSPy's sync entry point: ``lm(prompt=None, messages=None,
**kwargs)`` returning the list of outputs) has that called by every module, in a worker thread for async
callers: its behaviour is used, not bypassed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from typing import Any

from .. import settings as _settings
from ..callback import active_callbacks, observed
from ..costs import known_cost, price
from ..primitives import Usage
from ..tracking import record_role_usage
from .history import inspect_history, record_history
from .response import LMResponse, completion_outputs, completion_usage, output_text, value_of

LM_CLASS_STATE_KEY = "_dspy_lm_class"  # DSPy's marker of the LM class in saved state


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
        self._own_call = type(self).__call__ is not BaseLM.__call__

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
        if getattr(self, "_own_call", False):
            return await self.acall_own(prompt, messages, n=n, rollout_id=rollout_id, **kwargs)
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

    async def acall_own(
        self,
        prompt: str | None,
        messages: list[dict[str, Any]] | None,
        *,
        n: int = 1,
        rollout_id: Any = None,
        **kwargs: Any,
    ) -> LMResponse:
        """A call through the subclass's own ``__call__``, in a worker thread: its outputs as an ``LMResponse``
        (it counts one LM call; tokens are whatever the subclass reports, here none)."""
        if isinstance(prompt, list):  # the messages, given positionally (as the adapters give them)
            prompt, messages = None, prompt
        if n != 1:
            kwargs["n"] = n
        if rollout_id is not None:
            kwargs["rollout_id"] = rollout_id
        outputs = list(await asyncio.to_thread(self.__call__, prompt=prompt, messages=messages, **kwargs))
        return LMResponse(texts=[output_text(o) for o in outputs], usage=Usage(lm_calls=1), outputs=outputs)

    def _finish(
        self, raw: Any, prompt: str | None, messages: list[dict[str, Any]] | None, kwargs: dict[str, Any]
    ) -> LMResponse:
        """Outputs, usage and the history entry of one raw response."""
        cached = bool(value_of(raw, "cache_hit", False))
        merged = {**self.kwargs, **kwargs}
        outputs = completion_outputs(raw, logprobs=bool(merged.get("logprobs")))
        usage = completion_usage(raw, cached)
        price(usage, getattr(self, "prices", None))  # a custom LM may set prices too; otherwise unpriced
        response = LMResponse(
            texts=[output_text(o) for o in outputs],
            usage=usage,
            cached=cached,
            finish_reasons=[value_of(c, "finish_reason") or "" for c in value_of(raw, "choices", []) or []],
            outputs=outputs,
        )
        entry = {
            "prompt": prompt,
            "messages": messages if messages is not None else [{"role": "user", "content": prompt or ""}],
            "kwargs": {k: v for k, v in kwargs.items() if not k.startswith("api_")},
            "response": raw,
            "outputs": response.texts,
            "usage": usage.to_dict(),
            "cost": known_cost(usage),
            "cached": cached,
            "latency": 0.0,
            "timestamp": time.time(),
            "uuid": str(uuid.uuid4()),
            "model": self.model,
            "response_model": value_of(raw, "model"),
            "model_type": self.model_type,
            "rollout_id": kwargs.get("rollout_id"),
        }
        self._count(usage)
        record_role_usage(getattr(self, "role", "task"), usage, str(getattr(self, "model", "") or ""))
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
        return inspect_history(n, lm=self)
