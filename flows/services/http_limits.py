"""Request-body and request-head limits of ``dsr serve``, and a JSON response that always renders.

- JSON depth (``MAX_JSON_DEPTH``): ``json.loads`` recurses once per level of nested arrays/objects
  (RecursionError past ~1000), and so does everything that handles the value after it (``jsonable``, the JSON
  encoder). A request body's depth is checked before it is parsed, by a linear scan of its text
  (``json_text_too_deep``), and one nested too deep is a 400 (``parse_json_body``); a value such as a program's
  output is measured without recursion (``value_too_deep``) before it is converted or encoded.
- Header size (``MAX_HEADER_BYTES`` of header fields in all, as Node.js and h11 allow): a request head past it
  gets a 431 (RFC 6585). A head that arrived whole reaches the app, whose ``HeaderLimit`` middleware answers
  before any route runs. A head still arriving is stopped by h11 at its buffer (``server_options``: the limit
  plus ``REQUEST_LINE_ALLOWANCE`` for the request line); uvicorn would answer that with a 400 and close at
  once, so the client, still sending, would see the connection reset. ``HeadLimitH11Protocol`` answers 431
  instead and reads and discards what still comes for up to ``LINGER_SECONDS``, so the answer reaches it.
- ``SafeJSONResponse`` writes text UTF-8 cannot encode (a lone surrogate) as ``\\u`` escapes, so a response
  holding one is still sent rather than failing to render.

``Rejected`` is the 4xx refusal raised here and by the service's input validation.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

import h11
import pydantic
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_JSON_DEPTH = 64  # arrays/objects nested in a request body or a response; far below Python's recursion limit
MAX_HEADER_BYTES = 16 * 1024  # request header fields (names and values) in all, as Node.js and h11 allow
REQUEST_LINE_ALLOWANCE = 8 * 1024  # the protocol's buffer for a request head: the header limit plus this
LINGER_SECONDS = 2.0  # how long a connection refused for its head keeps reading before it is closed


class Rejected(Exception):
    """A request refused with a 4xx ``status``; the message names what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- request bodies and responses ------------------------------------------------------------------------------

_JSON_ESCAPE = re.compile(r"\\.", re.DOTALL)
_JSON_STRING = re.compile(r'"[^"]*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_text_too_deep(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests arrays/objects more than ``limit`` deep, found without parsing it: escapes,
    then strings are cut out, then brackets are counted. Linear time (each pass is one left-to-right scan)."""
    bare = _JSON_STRING.sub("", _JSON_ESCAPE.sub("", text))
    depth = 0
    for bracket in _JSON_BRACKET.finditer(bare):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def value_too_deep(value: Any, limit: int) -> bool:
    """Whether containers (lists, dicts, pydantic models, dataclasses...) nest more than ``limit`` deep in
    ``value``. Iterative, so a value of any depth (or with a reference cycle) is measured without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = item
        elif isinstance(item, pydantic.BaseModel) or (dataclasses.is_dataclass(item) and not isinstance(item, type)):
            children = vars(item).values()
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON, or a 400. The nesting depth is checked first: ``json.loads`` recurses once per level
    (RecursionError past ~1000), and so would everything that handles the value after it."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Rejected(400, "the body is not valid JSON (it is not UTF-8)") from None
    if json_text_too_deep(text, MAX_JSON_DEPTH):
        raise Rejected(400, f"the body nests arrays/objects more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except ValueError:
        raise Rejected(400, "the body is not valid JSON") from None


class SafeJSONResponse(JSONResponse):
    """A JSON response that also carries text UTF-8 cannot encode (lone surrogates), as ``\\u`` escapes."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error(status: int, message: str) -> SafeJSONResponse:
    return SafeJSONResponse({"error": message}, status_code=status)


# -- request heads ---------------------------------------------------------------------------------------------


def header_bytes(headers: list[tuple[bytes, bytes]]) -> int:
    """The size of a request's header fields as sent: ``name: value`` and CRLF each."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


class HeaderLimit:
    """ASGI middleware: a 431 for a request whose header fields exceed ``max_bytes``, before any route runs."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        size = header_bytes(scope["headers"]) if scope["type"] == "http" else 0
        if size > self.max_bytes:
            message = f"the request header fields have {size} bytes; the limit is {self.max_bytes}"
            await error(431, message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class HeadLimitH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering 431 when a request head outgrows the buffer (and is still arriving).

    h11 stops at ``h11_max_incomplete_event_size`` bytes of unfinished head and says so with
    ``RemoteProtocolError(error_status_hint=431)``; uvicorn answers every protocol error with a 400 and closes
    at once, so a client still sending its head sees the connection reset, not an answer. Here that case gets a
    431, then what the client still sends is read and discarded until it closes (at most ``LINGER_SECONDS``),
    so the answer reaches it. A whole head that is too large reaches the app, whose ``HeaderLimit`` says 431."""

    _discarding = False

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size
        if limit is None or len(self.conn.trailing_data[0]) <= limit:
            super().send_400_response(msg)
            return
        body = json.dumps({"error": f"the request head is over {limit} bytes"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=431, headers=headers, reason=b"Request Header Fields Too Large")
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._discarding:
            super().data_received(data)


def server_options(max_header_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """uvicorn settings for ``create_app``'s app: h11 with the 431-answering protocol, its head buffer the header
    limit plus room for the request line (a head under it arrives whole, and the app's check applies)."""
    return {"http": HeadLimitH11Protocol, "h11_max_incomplete_event_size": max_header_bytes + REQUEST_LINE_ALLOWANCE}
