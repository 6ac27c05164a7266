"""``StreamListener``: picks one output field's text out of a predictor's streamed reply.

It watches the reply's pieces for the field's opening marker (ChatAdapter's ``[[ ## field ## ]]``,
JSONAdapter's ``"field":``, XMLAdapter's ``<field>``), then hands out the text after it, holding back the
last few pieces while they could still be the start of the next marker, until the next field (or the end of
the JSON object) begins. A reply that arrives whole (a cache hit) carries both markers in one piece: the
listener then marks a cache hit and yields nothing, and the Prediction has the value. DSPy's algorithm.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .messages import StreamResponse

if TYPE_CHECKING:
    from ..modules.module import Module

SUPPORTED_ADAPTERS = ("ChatAdapter", "JSONAdapter", "XMLAdapter")
HELD_PIECES = 10  # pieces held back at most while they could be the next marker's start


def _markers(field: str) -> dict[str, dict[str, Any]]:
    return {
        "ChatAdapter": {
            "start": f"[[ ## {field} ## ]]",
            "end": re.compile(r"\[\[ ## (\w+) ## \]\]"),
            "indicator": "[",
            "end_prefixes": ("[", "[[", "[[ ", "[[ #", "[[ ##"),
            "end_contains": "[[ ##",
        },
        "JSONAdapter": {
            "start": f'"{field}":',
            "end": re.compile(r"\w*\"(,|\s*})"),
            "indicator": '"',
            "end_prefixes": ('"', '",', '" ', '"}'),
            "end_contains": "}",
        },
        "XMLAdapter": {
            "start": f"<{field}>",
            "end": re.compile(rf"</{field}>"),
            "indicator": "<",
            "end_prefixes": ("<", "</"),
            "end_contains": "</",
        },
    }


class StreamListener:
    """Listens to one output field of one predictor: ``StreamListener("answer")`` finds the predictor whose
    signature has ``answer`` when ``streamify`` starts (it must be the only one); ``predict=`` (and
    ``predict_name=``) name it. ``allow_reuse=True`` listens again each time the predictor is called (in a
    loop, as ReAct does); otherwise only its first call is streamed."""

    def __init__(
        self,
        signature_field_name: str,
        predict: Any = None,
        predict_name: str | None = None,
        allow_reuse: bool = False,
    ) -> None:
        self.signature_field_name = signature_field_name
        self.predict = predict
        self.predict_name = predict_name
        self.allow_reuse = allow_reuse
        self.adapter_identifiers = _markers(signature_field_name)
        self._reset()

    def _reset(self) -> None:
        self.field_start_queue: list[str] = []
        self.field_end_queue: list[str] = []
        self.stream_start = False
        self.stream_end = False
        self.cache_hit = False
        self.json_adapter_state = {"field_accumulated_messages": ""}
        self.value_started = False
        self.held_whitespace = ""
        self._adapter = "ChatAdapter"

    # -- receiving ---------------------------------------------------------------------------------------------
    def receive(self, chunk: Any) -> StreamResponse | None:
        """One piece of the reply (a ``StreamChunk``); the field's next ``StreamResponse``, or None."""
        adapter = getattr(chunk, "adapter", None) or _configured_adapter()
        if adapter not in self.adapter_identifiers:
            raise ValueError(
                f"Unsupported adapter for streaming: {adapter}, please use one of the following adapters: "
                f"{', '.join(SUPPORTED_ADAPTERS)}"
            )
        if self.stream_end:
            if not self.allow_reuse:
                return None
            self._reset()
        self._adapter = adapter
        marks = self.adapter_identifiers[adapter]
        start, end = marks["start"], marks["end"]
        try:
            message = chunk.choices[0].delta.content
        except (AttributeError, IndexError, TypeError):
            return None
        if message is None:
            return None
        is_json = adapter == "JSONAdapter"

        if message and start in message and not is_json:
            # the whole field in one piece (a cache hit, or a provider that sends large pieces): the Prediction
            # carries it; nothing is streamed
            if end.search(message[message.find(start) + len(start) :]):
                self.cache_hit = self.stream_start = self.stream_end = True
                return None

        if not self.field_start_queue and not self.stream_start and marks["indicator"] in message:
            self.field_start_queue.append(message)
            return None

        if self.field_start_queue and not self.stream_start:
            self.field_start_queue.append(message)
            joined = "".join(self.field_start_queue)
            if start in joined:
                self.stream_start = True
                self.field_start_queue = []
                message = joined[joined.find(start) + len(start) :].lstrip()
                if is_json:
                    # an extra "{" so partial parsing sees the object and, later, the next key
                    self.json_adapter_state["field_accumulated_messages"] += "{" + start
            elif _ends_with_prefix_of(joined.strip(), start):
                return None  # the marker may still be forming
            else:
                self.field_start_queue = []
                return None

        if not (self.stream_start and message):
            return None
        self.field_end_queue.append(message)
        token: str | None = None
        if not self._could_form_end(self._queued().strip(), adapter):
            token = self.flush()
        elif len(self.field_end_queue) > HELD_PIECES:
            token = self.field_end_queue.pop(0)
        if is_json:
            return self._json_piece(token, message)
        return self._marked_piece(token, end)

    def _queued(self) -> str:
        return "".join(self.field_end_queue)

    def _could_form_end(self, text: str, adapter: str) -> bool:
        """Whether the held text could be the start of the next marker (else it is safe to hand out)."""
        marks = self.adapter_identifiers[adapter]
        return any(text.endswith(p) for p in marks["end_prefixes"]) or marks["end_contains"] in text

    def _marked_piece(self, token: str | None, end: re.Pattern[str]) -> StreamResponse | None:
        if end.search(self._queued().strip()):
            self.stream_end = True
            rest = self.flush()
            token = (token + rest if token else rest).rstrip()
        # the parsed value is stripped: leading whitespace goes, trailing whitespace waits for more text
        if token and not self.value_started:
            token = token.lstrip()
        if token:
            body = token.rstrip()
            if body:
                self.value_started = True
                token, self.held_whitespace = self.held_whitespace + body, token[len(body) :]
            else:
                self.held_whitespace += token
                token = ""
        if token or self.stream_end:
            return StreamResponse(self.predict_name, self.signature_field_name, token or "", self.stream_end)
        return None

    def _json_piece(self, token: str | None, message: str) -> StreamResponse | None:
        import jiter

        state = self.json_adapter_state
        state["field_accumulated_messages"] += message
        accumulated = state["field_accumulated_messages"].encode("utf-8")
        if state["field_accumulated_messages"].rstrip().endswith("}"):
            try:
                jiter.from_json(accumulated)  # the whole object: the field was the last one
            except ValueError:
                pass
            else:
                self.stream_end = True
                rest = self.flush()
                rest = rest[: rest.rfind("}")]
                return StreamResponse(
                    self.predict_name, self.signature_field_name, (token or "") + rest, is_last_chunk=True
                )
        try:
            parsed = jiter.from_json(accumulated, partial_mode="trailing-strings")
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and len(parsed) > 1:  # the next key began: this field is done
            self.stream_end = True
            rest = self.flush()
            following = next((k for k in parsed if k != self.signature_field_name), None)
            rest = rest[: rest.find(following)] if following is not None else rest
            token = (token or "") + rest
        if token or self.stream_end:
            return StreamResponse(self.predict_name, self.signature_field_name, token or "", self.stream_end)
        return None

    def flush(self) -> str:
        """Hand out the held pieces, up to where the next marker starts."""
        held = self._queued()
        self.field_end_queue = []
        if self._adapter == "JSONAdapter":
            return held
        boundary = held.find(f"</{self.signature_field_name}>" if self._adapter == "XMLAdapter" else "[[")
        return held if boundary == -1 else held[:boundary]

    def finalize(self) -> StreamResponse | None:
        """At the end of the stream: the held pieces of a field that never saw its end marker, as the last
        chunk (None when the field ended, never started, or nothing is held)."""
        if self.stream_end or not self.stream_start:
            return None
        self.stream_end = True
        if self.field_end_queue:
            token = self.flush()
            if token:
                return StreamResponse(
                    self.predict_name, self.signature_field_name, self.held_whitespace + token, is_last_chunk=True
                )
        return None


def _ends_with_prefix_of(text: str, marker: str) -> bool:
    """Whether some ending of ``text`` is a beginning of ``marker``."""
    return any(marker.startswith(text[i:]) for i in range(len(text)))


def _configured_adapter() -> str:
    from .. import settings

    adapter = settings.get("adapter")
    return "ChatAdapter" if adapter is None else getattr(adapter, "name", type(adapter).__name__)


def find_predictor_for_stream_listeners(
    program: Module, stream_listeners: list[StreamListener]
) -> dict[int, list[StreamListener]]:
    """The listeners per predictor (``id``): a listener without ``predict`` gets the one predictor whose output
    fields include its field (an error when none or several do)."""
    wanted = {listener.signature_field_name: None for listener in stream_listeners if not listener.predict}
    found: dict[str, tuple[str, Any] | None] = dict(wanted)
    for name, predictor in program.named_predictors():
        for field_name in predictor.signature.output_fields:
            if field_name not in found:
                continue
            if found[field_name] is not None:
                raise ValueError(
                    f"Signature field {field_name} is not unique in the program, cannot automatically determine "
                    "which predictor to use for streaming. Please specify the predictor to listen to."
                )
            found[field_name] = (name, predictor)
    by_predict: defaultdict[int, list[StreamListener]] = defaultdict(list)
    for listener in stream_listeners:
        if not listener.predict:
            match = found.get(listener.signature_field_name)
            if match is None:
                raise ValueError(
                    f"Signature field {listener.signature_field_name} is not a field of any predictor in the "
                    "program, cannot automatically determine which predictor to use for streaming. Please "
                    "verify your field name or specify the predictor to listen to."
                )
            listener.predict_name, listener.predict = match
        by_predict[id(listener.predict)].append(listener)
    return by_predict
