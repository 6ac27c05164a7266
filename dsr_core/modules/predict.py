"""Predict: one LM call for one signature, with its own instructions, demos and LM settings."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping
from typing import Any

from .. import settings as _settings
from .._async import run_sync
from ..adapters import Adapter, ChatAdapter, JSONAdapter
from ..adapters.base import STREAM_TO, STREAMING
from ..adapters.chat import allows_none
from ..adapters.types import type_adapter
from ..errors import DsrError
from ..lm import LM
from ..primitives import Example, Prediction, Usage
from ..signatures import Signature, ensure_signature, type_name
from ..tracking import current_usage, record_trace
from .module import Module

log = logging.getLogger(__name__)

_DEFAULT_ADAPTER = ChatAdapter()  # stateless; used when neither the call, predictor nor settings give one
# Models whose default adapter is JSONAdapter: the bundled SmolLM2-135M (flows.services.local_lm serves it under this
# name) does not keep ChatAdapter's field markers, and llama.cpp constrains its JSON mode to the schema.
JSON_ADAPTER_MODELS = frozenset({"smollm2-135m-instruct"})
_JSON_ADAPTER = JSONAdapter()
_CALL_OPTIONS = {"lm", "demos", "config", "adapter", "rollout_id", "signature"}


class Predict(Module):
    """``Predict("question -> answer")``; call it with the input fields as keywords.

    Per-call overrides: ``lm=``, ``demos=``, ``config={"n": 3, "temperature": 0.7, ...}``, ``adapter=``,
    ``rollout_id=``, ``signature=``. Construction-time ``config`` keywords apply to every call.

    Inputs are checked as DSPy checks them: a missing input with a default takes it, an extra keyword or a
    value of the wrong type is logged as a warning, an Optional input may be left out (logged, as DSPy
    does). A missing input that is neither Optional nor defaulted is an error here (DSPy only warns and
    sends a prompt without it).
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
        self.callbacks: list[Any] = list(config.pop("callbacks", None) or [])  # never sent with the request
        self.config: dict[str, Any] = dict(config)

    def __repr__(self) -> str:
        return f"Predict({self.signature.signature!r})"

    def forward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        token = _SYNC_CALL.set(True)  # an adapter that overrides __call__ gets the sync call, as in DSPy
        try:
            return run_sync(self.aforward(**kwargs))
        finally:
            _SYNC_CALL.reset(token)

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        return super().__call__(**_keyword_inputs(self, args, kwargs))

    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        return await super().acall(**_keyword_inputs(self, args, kwargs))

    async def aforward(self, **kwargs: Any) -> Prediction:  # type: ignore[override]
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in _CALL_OPTIONS}
        lm = options.get("lm") or self.lm or _settings.get("lm")
        if lm is None:
            raise DsrError("no LM: pass lm=..., set predictor.lm, or call dsr.configure(lm=dsr.LM(...))")
        if isinstance(lm, str):
            raise DsrError(f"lm must be a dsr.LM, not a string: use dsr.configure(lm=dsr.LM({lm!r}))")
        signature = ensure_signature(options["signature"]) if "signature" in options else self.signature
        inputs = check_inputs(signature, kwargs)
        demos = options.get("demos", self.demos)
        config = {**self.config, **(options.get("config") or {})}
        n = int(config.pop("n", 1) or 1)
        if n > 1:
            temperature = config.get("temperature", getattr(lm, "temperature", None))
            if temperature is None or temperature <= 0.15:
                config["temperature"] = 0.7  # n identical samples are no use: DSPy raises it the same way
        rollout_id = options.get("rollout_id", config.pop("rollout_id", None))
        # DSPy's precedence: the call's adapter, then the predictor's; an explicit adapter=None skips both
        adapter = adapter_for(lm, options["adapter"] if "adapter" in options else self.adapter)
        streaming = STREAMING.get()  # in a streamed call (dsr.streamify): this call streams if listened to
        token = STREAM_TO.set(streaming.sink_for(self)) if streaming is not None else None
        try:
            completions, usage = await _run_adapter(
                adapter, lm, signature, [_as_mapping(d) for d in demos], inputs, n, config, rollout_id
            )
        finally:
            if token is not None:
                STREAM_TO.reset(token)
        prediction = Prediction.from_completions(completions, signature, usage)
        tracked = current_usage.get()
        if tracked is not None:
            tracked.add(usage)
        record_trace(self, inputs, prediction)
        return prediction

    def update_config(self, **kwargs: Any) -> None:
        self.config = {**self.config, **kwargs}

    def get_config(self) -> dict[str, Any]:
        return self.config

    # -- state -------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.demos = []


_SYNC_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("dsr_sync_predict_call", default=False)
_OVERRIDES: dict[type, tuple[bool, bool]] = {}  # adapter class -> (overrides __call__, overrides acall)


def _overrides(adapter: Any) -> tuple[bool, bool]:
    cls = type(adapter)
    known = _OVERRIDES.get(cls)
    if known is None:
        known = _OVERRIDES[cls] = (cls.__call__ is not Adapter.__call__, cls.acall is not Adapter.acall)
    return known


async def _run_adapter(
    adapter: Any,
    lm: Any,
    signature: type[Signature],
    demos: list[Mapping[str, Any]],
    inputs: dict[str, Any],
    n: int,
    config: dict[str, Any],
    rollout_id: Any,
) -> tuple[list[dict[str, Any]], Usage]:
    """The adapter's completions and usage. An adapter subclass that overrides DSPy's entry points has them
    called as DSPy calls them: ``adapter(lm, lm_kwargs=..., ...)`` for a sync call (in a worker thread),
    ``await adapter.acall(...)`` otherwise; its calls' usage is then in the LM's totals, not the prediction's."""
    own_call, own_acall = _overrides(adapter) if isinstance(adapter, Adapter) else (False, False)
    if not (own_call or own_acall):
        return await adapter.arun(lm, signature, demos, inputs, n=n, config=config, rollout_id=rollout_id)
    lm_kwargs = dict(config)
    if n != 1:
        lm_kwargs["n"] = n
    if rollout_id is not None:
        lm_kwargs["rollout_id"] = rollout_id
    arguments = {"lm_kwargs": lm_kwargs, "signature": signature, "demos": demos, "inputs": inputs}
    if own_call and _SYNC_CALL.get():
        completions = await asyncio.to_thread(adapter, lm, **arguments)
    elif own_acall:
        completions = await adapter.acall(lm, **arguments)
    else:  # only __call__ overridden, and this is an async call: DSPy's async path uses the base acall too
        return await adapter.arun(lm, signature, demos, inputs, n=n, config=config, rollout_id=rollout_id)
    return list(completions), Usage()


def adapter_for(lm: Any, chosen: Adapter | None = None) -> Adapter:
    """The adapter a call uses: ``chosen`` (the call's or the predictor's), else the ``adapter`` setting, else
    the default for ``lm``'s model (JSONAdapter for ``JSON_ADAPTER_MODELS``, ChatAdapter for any other)."""
    adapter = chosen or _settings.get("adapter")
    if adapter is not None:
        return adapter
    model = str(getattr(lm, "model", "") or "").removeprefix("openai/").lower()
    return _JSON_ADAPTER if model in JSON_ADAPTER_MODELS else _DEFAULT_ADAPTER


def _keyword_inputs(predict: Predict, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """DSPy also takes one positional object whose attributes are the inputs."""
    if not args:
        return kwargs
    if len(args) > 1 or kwargs or not hasattr(args[0], "__dict__"):
        first = next(iter(predict.signature.input_fields), "input")
        raise DsrError(
            "You may use either positional or keyword arguments when calling `Predict`, not both: "
            f"pass one object with the inputs as attributes, or keywords: `predict({first}=input_value, ...)`"
        )
    return dict(vars(args[0]))


def _warn_type_mismatches(inputs: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    for name, field in inputs.items():
        value = values.get(name)
        if value is None or field.type_undefined or name not in values:
            continue
        if not value_matches_type(value, field.annotation):
            log.warning(
                "Type mismatch for field '%s': expected %s based on given Signature, "
                "but the provided value is incompatible: %s.",
                name,
                type_name(field.annotation).replace("Ellipsis", "..."),  # tuple[int, ...], as DSPy writes it
                value,
            )


def check_inputs(signature: type[Signature], given: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs to send: defaults filled in, extras and type mismatches logged (DSPy's warnings)."""
    values = dict(given)
    inputs = signature._inputs
    for name, field in inputs.items():
        if name not in values and field.has_default:
            values[name] = field.default
    extra = [k for k in values if k not in inputs]
    if extra:
        log.warning(
            "Input contains fields not in signature. These fields will be ignored: %s. Expected fields: %s.",
            extra,
            list(signature.input_fields),
        )
    if _settings.get("warn_on_type_mismatch"):  # DSPy's switch for this check
        _warn_type_mismatches(inputs, values)
    missing = [k for k in signature.input_fields if k not in values]
    if missing:
        present = [k for k in signature.input_fields if k in values]
        log.warning("Not all input fields were provided to module. Present: %s. Missing: %s.", present, missing)
        required = [k for k in missing if not allows_none(signature.input_fields[k].annotation)]
        if required:
            raise DsrError(
                f"Predict({signature.signature}): missing input field(s) {required}; got {sorted(given)} "
                "(declare the field Optional[...] or give it a default to make it optional)"
            )
    return {k: v for k, v in values.items() if k in signature.input_fields}


def value_matches_type(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the declared type (strictly: no coercion), for the mismatch warning."""
    if annotation is Any or annotation is str and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return True  # a list of passages for a str field is rendered as a numbered list, as DSPy allows
    if annotation is str:
        return isinstance(value, str)  # what pydantic's strict check says, without loading pydantic for it
    import pydantic

    try:
        type_adapter(annotation).validate_python(value, strict=True)
    except pydantic.ValidationError:
        return False
    except Exception:  # noqa: BLE001 - a type pydantic cannot check is not second-guessed
        return True
    return True


def _as_mapping(demo: Any) -> Mapping[str, Any]:
    if isinstance(demo, Mapping):
        return demo
    if isinstance(demo, Example):
        return demo.to_dict()
    raise TypeError(f"a demo must be a dict or an Example, got {type(demo).__name__}")
