"""``LM.astream``: a chat completion streamed through the openai SDK (``stream=True``), as text pieces.

The request is the one ``acall`` sends plus ``stream`` and ``stream_options={"include_usage": True}``, and it
goes through the SDK's raw request path with the SDK's own stream reader (``AsyncStream`` of
``ChatCompletionChunk``), whichever transport the loop's clients use. Around it, what ``acall`` does: the
cache (looked up and filled with the assembled reply under the non-streamed request's key, so a streamed and
a plain call share entries; a hit is one chunk), the rpm/tpm/in-flight limits (held until the stream ends),
retries until the first text arrives (after that, a broken stream is an ``LMConnectionError``: a second
attempt would repeat text already handed out), dsr's typed errors, the LM callbacks, usage and history.
Native tool calls arrive as ``tool_calls`` deltas and are assembled into the reply as a plain call gives them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..cache import request_key
from ..callback import active_callbacks, observed
from ..costs import price
from ..primitives import Usage
from .response import LMResponse, tool_call_outputs
from .retry import is_transient

if TYPE_CHECKING:
    from .client import LM

log = logging.getLogger(__name__)


@dataclass(eq=False)
class StreamChunk:
    """One piece of a streamed reply. ``response`` is set on the last chunk only: the assembled reply.

    ``predict_id`` and ``adapter`` are filled in by ``dsr.streamify`` (the ``id`` of the Predict whose call
    this is, and its adapter's name). ``chunk.choices[0].delta.content`` reads the text as on an OpenAI/LiteLLM
    stream chunk.
    """

    text: str
    response: LMResponse | None = None
    predict_id: int | None = None
    adapter: str | None = None

    @property
    def usage(self) -> Usage | None:
        return self.response.usage if self.response is not None else None

    @property
    def choices(self) -> list[Any]:
        finish = self.response.finish_reasons[0] if self.response and self.response.finish_reasons else None
        return [SimpleNamespace(index=0, delta=SimpleNamespace(content=self.text), finish_reason=finish)]

    def json(self) -> dict[str, Any]:
        """The chunk in OpenAI's ``chat.completion.chunk`` shape (for ``streaming_response``)."""
        choice = self.choices[0]
        data: dict[str, Any] = {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": self.text}, "finish_reason": choice.finish_reason}],
        }
        if self.response is not None:
            data["usage"] = self.response.usage.to_dict()
        return data


async def stream_completion(
    lm: LM, messages: list[dict[str, Any]], rollout_id: Any, cache: bool | None, overrides: dict[str, Any]
) -> AsyncIterator[StreamChunk]:
    callbacks = active_callbacks(lm)
    if getattr(lm, "_overridden", False):  # a subclass's own forward: its reply as one chunk
        response = await lm.acall(messages=messages, rollout_id=rollout_id, cache=cache, **overrides)
        yield StreamChunk(response.texts[0] if response.texts else "", response)
        return
    if not callbacks:
        async for chunk in _stream(lm, messages, rollout_id, cache, overrides):
            yield chunk
        return
    with observed(callbacks, "lm", lm, {"prompt": None, "messages": messages, "kwargs": overrides}) as call:
        async for chunk in _stream(lm, messages, rollout_id, cache, overrides):
            if chunk.response is not None:
                call.outputs = list(chunk.response)
            yield chunk


async def _stream(
    lm: LM, messages: list[dict[str, Any]], rollout_id: Any, cache: bool | None, overrides: dict[str, Any]
) -> AsyncIterator[StreamChunk]:
    from .client import _cache_entry, _cached_response

    if int(overrides.get("n") or 1) != 1:
        raise ValueError("LM.astream streams one choice: n must be 1")
    body = lm.build_request(messages, **overrides)
    store = lm._cache() if cache is not False else None
    key = None
    if store is not None:
        key = request_key(body if rollout_id is None else {**body, "rollout_id": rollout_id})
        hit = store.get(key)
        if hit is not None:
            response = _cached_response(hit)
            lm._record(body, response, rollout_id, hit.get("usage"))
            yield StreamChunk(response.texts[0] if response.texts else "", response)
            return
    started = time.perf_counter()
    replies: list[LMResponse] = []
    async for piece in _request_with_retries(lm, body, replies):
        yield StreamChunk(piece)
    response = replies[0]
    response.latency = time.perf_counter() - started
    price(response.usage, lm.prices)
    if store is not None and key is not None:
        store.put(key, _cache_entry(response))
    lm._record(body, response, rollout_id, None)
    yield StreamChunk("", response)


async def _request_with_retries(lm: LM, body: dict[str, Any], replies: list[LMResponse]) -> AsyncIterator[str]:
    """The reply's text pieces; the assembled reply is appended to ``replies``. Retried until text arrives."""
    import openai

    from .client import _estimate_tokens

    state = await lm._state()
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    estimate = _estimate_tokens(body)
    last_error: Exception | None = None
    for attempt in range(lm.num_retries + 1):
        emitted = False
        try:
            async for piece in _attempt(lm, state, streamed, estimate, replies):
                emitted = True
                yield piece
            return
        except openai.APIError as exc:  # an error event in the stream too (the SDK's APIError)
            if emitted and isinstance(exc, openai.APIConnectionError):
                raise lm._connection_error(
                    exc, "the stream broke off after its first text; not retried", "the stream stalled"
                ) from None
            if emitted or not is_transient(exc):
                raise lm._fatal(exc) from None
            last_error = exc
        if attempt == lm.num_retries:
            break
        await lm._before_retry(attempt, last_error)
    raise lm._exhausted(last_error)


async def _attempt(
    lm: LM, state: Any, body: dict[str, Any], estimate: float, replies: list[LMResponse]
) -> AsyncIterator[str]:
    """One streamed request under the LM's limits (held until the stream ends); the SDK's errors untranslated,
    a transport failure mid-stream as ``openai.APIConnectionError``."""
    import openai
    from openai.types.chat import ChatCompletionChunk

    if lm._rpm is not None:
        await lm._rpm.wait(1)
    if lm._tpm is not None:
        await lm._tpm.wait(estimate)
    await lm._in_flight.acquire()
    try:
        stream = await state.client().post(
            "/chat/completions",
            body=body,
            cast_to=ChatCompletionChunk,
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        pieces: dict[int, list[str]] = {}
        calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> tool call index -> the call so far
        finish: dict[int, str] = {}
        usage: Any = None
        try:
            chunks = stream.__aiter__()
            while True:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except openai.APIError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the transport's error mid-stream, as the SDK names it
                    raise openai.APIConnectionError(message=f"the stream broke off: {exc}", request=None) from exc  # type: ignore[arg-type]
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish[choice.index] = choice.finish_reason
                    text = choice.delta.content if choice.delta is not None else None
                    for delta in (choice.delta.tool_calls if choice.delta is not None else None) or ():
                        merge_tool_call(calls.setdefault(choice.index, {}), delta)
                    if text:
                        pieces.setdefault(choice.index, []).append(text)
                        yield text
        finally:
            await stream.close()
        count = max([0, *pieces, *finish, *calls]) + 1
        texts = ["".join(pieces.get(i, [])) for i in range(count)]
        tool_calls = [[calls[i][k] for k in sorted(calls[i])] if i in calls else None for i in range(count)]
        response = LMResponse(
            texts=texts,
            usage=Usage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                lm_calls=1,
            ),
            finish_reasons=[finish.get(i, "") for i in range(count)],
            outputs=tool_call_outputs(texts, tool_calls) if any(tool_calls) else None,
        )
        if "length" in response.finish_reasons:
            log.warning("LM %s: a reply was cut at max_tokens; raise max_tokens if outputs fail to parse", lm.model)
        if lm._tpm is not None:
            lm._tpm.refund(estimate - response.usage.total_tokens)
        replies.append(response)
    finally:
        lm._in_flight.release()


def merge_tool_call(calls: dict[int, dict[str, Any]], delta: Any) -> None:
    """Add one streamed ``tool_calls`` delta to the calls assembled so far, as a non-streamed message carries
    them: the id and name arrive first, the JSON arguments in pieces."""
    call = calls.setdefault(delta.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.id:
        call["id"] = delta.id
    if delta.type:
        call["type"] = delta.type
    function = delta.function
    if function is not None:
        call["function"]["name"] += function.name or ""
        call["function"]["arguments"] += function.arguments or ""
