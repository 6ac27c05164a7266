"""``streamify``: run a program and yield, as they happen, its listeners' ``StreamResponse``s, its status
messages, and at the end its Prediction.

How it reaches the LM: the streamed call sets ``adapters.base.STREAMING`` to its ``_Session`` for the run;
each Predict asks the session for a sink (``sink_for``: one only when a listener targets that predictor, or
for every predictor when there are no listeners) and puts it in ``adapters.base.STREAM_TO`` around its
adapter call; the adapter then calls ``sink.complete`` instead of ``lm.acall``, which streams through
``LM.astream`` and sends each piece to the session's queue. Everything else calls the LM as usual.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from queue import Queue
from typing import Any

import orjson

from .. import settings as _settings
from ..adapters.base import STREAMING
from ..lm.stream import StreamChunk
from ..primitives import Prediction
from .messages import StatusMessageProvider, StatusStreamingCallback
from .streaming_listener import StreamListener, find_predictor_for_stream_listeners

log = logging.getLogger(__name__)


class _Failed:
    """The program raised: the streamer re-raises ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Session:
    """One streamed call: where its pieces, status messages and Prediction go (an asyncio queue of the
    streamer's loop; ``send`` works from any thread and loop, as a synchronous program runs elsewhere)."""

    def __init__(self, targets: dict[int, list[StreamListener]], stream_all: bool) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.targets = targets
        self.stream_all = stream_all

    def send(self, item: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.queue.put_nowait(item)
        else:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def sink_for(self, predict: Any) -> _Sink | None:
        """The sink of ``predict``'s LM calls: None when no listener targets it (it calls the LM as usual)."""
        if self.stream_all or id(predict) in self.targets:
            return _Sink(self, id(predict))
        return None


class _Sink:
    """What an adapter calls instead of ``lm.acall`` while its Predict streams (``adapters.base.STREAM_TO``)."""

    __slots__ = ("predict_id", "session")

    def __init__(self, session: _Session, predict_id: int) -> None:
        self.session = session
        self.predict_id = predict_id

    async def complete(self, lm: Any, adapter: Any, messages: list[dict[str, Any]], **options: Any) -> Any:
        """The LM's reply to ``messages``, its pieces sent to the stream as they come."""
        name = getattr(adapter, "name", type(adapter).__name__)
        n = int(options.pop("n", 1) or 1)
        if n != 1 or not hasattr(lm, "astream"):  # several choices, or an LM that cannot stream: one piece
            response = await lm.acall(messages, n=n, **options)
            text = response.texts[0] if response.texts else ""
            self.session.send(StreamChunk(text, response, self.predict_id, name))
            return response
        response = None
        async for chunk in lm.astream(messages, **options):
            chunk.predict_id, chunk.adapter = self.predict_id, name
            self.session.send(chunk)
            if chunk.response is not None:
                response = chunk.response
        return response


def streamify(
    program: Any,
    status_message_provider: StatusMessageProvider | None = None,
    stream_listeners: list[StreamListener] | None = None,
    include_final_prediction_in_output_stream: bool = True,
    is_async_program: bool = False,
    async_streaming: bool = True,
) -> Callable[..., Any]:
    """Wrap ``program`` so that a call yields what it produces as it goes; DSPy's ``dspy.streamify``.

    ``stream = dsr.streamify(program, stream_listeners=[dsr.streaming.StreamListener("answer")])``, then
    ``async for value in stream(question=...)``: ``StreamResponse`` pieces of the listened fields,
    ``StatusMessage``s from ``status_message_provider`` (tool calls by default), and last the Prediction.
    Without listeners every LM call streams and its raw ``StreamChunk``s are yielded.
    ``include_final_prediction_in_output_stream=False`` leaves the Prediction out, unless no listener
    streamed anything (a cache hit, or no listeners). ``is_async_program``: call ``program.acall``
    (otherwise a synchronous program runs in a worker thread). ``async_streaming=False``: a plain generator.
    """
    listeners = list(stream_listeners or [])
    targets = find_predictor_for_stream_listeners(program, listeners) if listeners else {}
    if is_async_program:
        call = program.acall
    elif inspect.iscoroutinefunction(program) or inspect.iscoroutinefunction(type(program).__call__):
        call = program
    else:

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(program, *args, **kwargs)

    status_callback = StatusStreamingCallback(status_message_provider)

    async def run(session: _Session, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        STREAMING.set(session)  # this task's own context: the program's calls see it
        callbacks = list(_settings.get("callbacks") or [])
        if not any(isinstance(c, StatusStreamingCallback) for c in callbacks):
            callbacks.append(status_callback)
        try:
            with _settings.context(callbacks=callbacks):
                prediction = await call(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the streamer, which raises it
            session.send(_Failed(exc))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return
        session.send(prediction)

    async def async_streamer(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        session = _Session(targets, stream_all=not listeners)
        task = asyncio.get_running_loop().create_task(run(session, args, kwargs), context=contextvars.copy_context())
        try:
            while True:
                value = await session.queue.get()
                if isinstance(value, _Failed):
                    raise value.error
                if isinstance(value, StreamChunk):
                    if not listeners:
                        yield value
                        continue
                    for listener in targets.get(value.predict_id, ()):
                        if (response := listener.receive(value)) is not None:
                            yield response
                elif isinstance(value, Prediction):
                    for listener in listeners:
                        if (last := listener.finalize()) is not None:
                            yield last
                    if (
                        include_final_prediction_in_output_stream
                        or not listeners
                        or any(listener.cache_hit for listener in listeners)
                        or not any(listener.stream_start for listener in listeners)
                    ):
                        yield value
                    return
                else:  # a status message, or whatever a custom LM sent
                    yield value
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - the call was abandoned: its outcome is nobody's
                    pass

    if async_streaming:
        return async_streamer

    def sync_streamer(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        return apply_sync_streaming(async_streamer(*args, **kwargs))

    return sync_streamer


def apply_sync_streaming(async_generator: AsyncGenerator[Any, None]) -> Generator[Any, None, None]:
    """A plain generator over ``async_generator``, which runs on its own event loop in a worker thread (with
    the caller's contextvars); its exception is raised in the caller."""
    items: Queue[Any] = Queue()
    finished = object()
    context = contextvars.copy_context()

    def produce() -> None:
        async def drain() -> None:
            try:
                async for item in async_generator:
                    items.put(item)
            except BaseException as exc:  # noqa: BLE001 - raised in the consuming thread
                items.put(_Failed(exc))
            finally:
                items.put(finished)

        context.run(asyncio.run, drain())

    threading.Thread(target=produce, daemon=True).start()
    while True:
        item = items.get()
        if item is finished:
            return
        if isinstance(item, _Failed):
            raise item.error
        yield item


async def streaming_response(streamer: AsyncGenerator[Any, None]) -> AsyncGenerator[str, None]:
    """A streamed program's output as server-sent events for a web response (DSPy's): each Prediction as
    ``data: {"prediction": {...}}``, each raw LM chunk as ``data: {"chunk": {...}}``, strings that are already
    events as they are, then ``data: [DONE]``."""
    async for value in streamer:
        if isinstance(value, Prediction):
            yield f"data: {orjson.dumps({'prediction': dict(value.items())}, default=str).decode()}\n\n"
        elif isinstance(value, StreamChunk):
            yield f"data: {orjson.dumps({'chunk': value.json()}).decode()}\n\n"
        elif isinstance(value, str) and value.startswith("data:"):
            yield value
        else:
            raise ValueError(f"Unknown chunk value type: {value}")
    yield "data: [DONE]\n\n"
