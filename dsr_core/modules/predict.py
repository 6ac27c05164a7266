"""Predict: one LM call for one signature, with its own instructions, demos and LM settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .. import settings as _settings
from .._async import run_sync
from ..adapters import Adapter, ChatAdapter
from ..errors import DsrError
from ..lm import LM
from ..primitives import Example, Prediction
from ..signatures import Signature, ensure_signature
from ..tracking import current_trace, current_usage
from .module import Module

log = logging.getLogger(__name__)

_DEFAULT_ADAPTER = ChatAdapter()  # stateless; used when neither the call, predictor nor settings give one
_CALL_OPTIONS = {"lm", "demos", "config", "adapter", "rollout_id"}


class Predict(Module):
    """``Predict("question -> answer")``; call it with the input fields as keywords.

    Per-call overrides: ``lm=``, ``demos=``, ``config={"n": 3, "temperature": 0.7, ...}``, ``adapter=``,
    ``rollout_id=``. Construction-time ``config`` keywords apply to every call.
    """

    def __init__(
        self,
        signature: Any,
        *,
        lm: LM | None = None,
        demos: list[Any] | None = None,
        adapter: Adapter | None = None,
        **config: Any,
    ) -> None:
        self.signature: type[Signature] = ensure_signature(signature)
        self.lm = lm
        self.demos: list[Any] = list(demos or [])
        self.adapter = adapter
        self.config: dict[str, Any] = dict(config)

    def __repr__(self) -> str:
        return f"Predict({self.signature.signature!r})"

    def forward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        return run_sync(self.aforward(**kwargs))

    async def aforward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in _CALL_OPTIONS}
        lm = options.get("lm") or self.lm or _settings.get("lm")
        if lm is None:
            raise DsrError("no LM: pass lm=..., set predictor.lm, or call dsr.configure(lm=dsr.LM(...))")
        signature = self.signature
        inputs = {k: v for k, v in kwargs.items() if k in signature.input_fields}
        missing = [k for k in signature.input_fields if k not in inputs]
        if missing:
            raise DsrError(f"Predict({signature.signature}): missing input field(s) {missing}; got {sorted(kwargs)}")
        demos = options.get("demos", self.demos)
        config = {**self.config, **(options.get("config") or {})}
        n = int(config.pop("n", 1))
        rollout_id = options.get("rollout_id", config.pop("rollout_id", None))
        adapter = options.get("adapter") or self.adapter or _settings.get("adapter") or _DEFAULT_ADAPTER
        completions, usage = await adapter.acall(
            lm,
            signature,
            [_as_mapping(d) for d in demos],
            inputs,
            n=n,
            config=config,
            rollout_id=rollout_id,
        )
        prediction = Prediction.from_completions(completions, usage)
        tracked = current_usage.get()
        if tracked is not None:
            tracked.add(usage)
        trace = current_trace.get()
        if trace is not None:
            trace.append((self, inputs, prediction))
        return prediction

    # -- state -------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.demos = []


def _as_mapping(demo: Any) -> Mapping[str, Any]:
    if isinstance(demo, Mapping):
        return demo
    if isinstance(demo, Example):
        return demo.to_dict()
    raise TypeError(f"a demo must be a dict or an Example, got {type(demo).__name__}")
