"""What one LM call returns: ``LMResponse``, read from an OpenAI-style chat completion (an object or a dict,
as a custom ``BaseLM`` returns it) or from the raw JSON body dsr's ``LM`` receives."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..primitives import Usage

log = logging.getLogger(__name__)


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


def value_of(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for a mapping, ``obj.key`` otherwise (responses come as dicts or SDK objects)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def output_text(output: Any) -> str:
    """The text of one output (a string, or a dict with ``text``)."""
    if isinstance(output, dict):
        return output.get("text") or ""
    return output or ""


def completion_outputs(response: Any, logprobs: bool = False) -> list[Any]:
    """DSPy's outputs of a chat completion: per choice its text, or a dict when it carries more."""
    outputs: list[dict[str, Any]] = []
    for choice in value_of(response, "choices", []) or []:
        message = value_of(choice, "message")
        text = value_of(message, "content") if message is not None else value_of(choice, "text")
        output: dict[str, Any] = {"text": text}
        if reasoning := value_of(message, "reasoning_content"):
            output["reasoning_content"] = reasoning
        if logprobs:
            output["logprobs"] = value_of(choice, "logprobs")
        if calls := value_of(message, "tool_calls"):
            output["tool_calls"] = calls
        outputs.append(output)
    if all(len(o) == 1 for o in outputs):
        return [o["text"] for o in outputs]
    return outputs


def completion_usage(response: Any, cached: bool = False) -> Usage:
    """The usage a chat completion reports (no tokens for a cached one)."""
    usage = value_of(response, "usage") or {}
    if cached:
        return Usage(lm_calls=1, cached_calls=1)
    return Usage(
        prompt_tokens=int(value_of(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(value_of(usage, "completion_tokens", 0) or 0),
        lm_calls=1,
    )


class MalformedResponseError(Exception):
    """A 200 answer whose body is not a chat completion (retried like a transient failure)."""


def _loads(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:  # NaN, Infinity or another encoding than UTF-8: what json still reads
        return json.loads(content)


def parse_completion(content: bytes, model: str, *, warn_cut: bool = True) -> LMResponse:
    """The ``LMResponse`` of a raw chat-completion body; warns when a reply was cut at max_tokens."""
    try:
        data = _loads(content)
        choices = data["choices"]
        texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        finish = [c.get("finish_reason") or "" for c in choices]
        tool_calls = [(c.get("message") or {}).get("tool_calls") or None for c in choices]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        snippet = content[:200].decode("utf-8", "replace")
        raise MalformedResponseError(f"malformed completion body ({exc.__class__.__name__}): {snippet!r}") from None
    if not texts:
        raise MalformedResponseError("completion has no choices")
    usage = data.get("usage") or {}
    if warn_cut and "length" in finish:
        log.warning("LM %s: a reply was cut at max_tokens; raise max_tokens if outputs fail to parse", model)
    details = usage.get("prompt_tokens_details") or {}
    return LMResponse(
        texts=texts,
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            lm_calls=1,
            cached_prompt_tokens=int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
        ),
        finish_reasons=finish,
        outputs=tool_call_outputs(texts, tool_calls) if any(tool_calls) else None,
    )


def tool_call_outputs(texts: list[str], tool_calls: list[Any]) -> list[Any]:
    """DSPy's outputs for choices of which some called tools: ``{"text", "tool_calls"}`` for those (the
    text None when the message had no content, as DSPy gives it), ``{"text"}`` for the others."""
    outputs: list[Any] = []
    for text, calls in zip(texts, tool_calls, strict=True):
        outputs.append({"text": text or None, "tool_calls": calls} if calls else {"text": text})
    return outputs
