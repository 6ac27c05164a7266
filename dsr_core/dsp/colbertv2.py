"""ColBERTv2: DSPy's client of a ColBERTv2 server (``dspy.dsp.colbertv2.ColBERTv2``, ``dspy.ColBERTv2``).

``ColBERTv2(url, port=None, post_requests=False)``; ``colbert(query, k=10)`` asks the server for the ``k`` best
passages, as DSPy does: ``GET url?query=...&k=...`` (k at most 100, the hosted server's limit, as DSPy checks) or,
with ``post_requests=True``, ``POST url`` with the JSON body ``{"query": ..., "k": ...}``. The server answers
``{"topk": [{"text": ..., "pid": ..., "score": ...}, ...]}``; each passage comes back as a ``dotdict`` with the
server's keys plus ``long_text`` (the text again: what ``Retrieve`` reads), and ``simplify=True`` gives the texts
alone. DSPy adds ``long_text`` to a GET's passages only, so its POST passages break ``Retrieve`` and
``simplify``; here both methods give the same shape.

Answers are kept in memory per (method, URL, query, k), as DSPy caches them, so asking again sends no request;
failures are not kept. A failure is a ``ColBERTv2Error`` naming the URL and what was wrong (no connection, no
answer in time, a status other than 200, a body that is not JSON or not DSPy's shape, an error the server
reported), never a bare KeyError. ``await colbert.acall(...)`` asks without blocking the event loop.

DSPy's ``ColBERTv2RetrieverLocal`` and ``ColBERTv2RerankerLocal`` run the ``colbert`` package in process; dsr
does not, and says so when they are asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

from ..errors import DsrError
from .utils import dotdict

if TYPE_CHECKING:
    import httpx2

DEFAULT_TIMEOUT = 10.0  # seconds per request, DSPy's
GET_K_LIMIT = 100  # DSPy's assertion for GET requests: the hosted ColBERTv2 server serves at most 100
CACHE_SIZE = 10_000  # answers kept in memory; the least recently used goes first
_BODY_SNIPPET = 200  # characters of an unusable body quoted in an error

Method = Literal["GET", "POST"]
Passages = tuple[dict[str, Any], ...]


class ColBERTv2Error(DsrError, ValueError):
    """A ColBERTv2 server could not be reached or answered something unusable; the message names the URL.

    A ValueError, as DSPy's errors for an error reply or an unexpected body are. ``status_code`` is the HTTP
    status when the server answered, else None.
    """

    def __init__(self, message: str, *, url: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code


class _AnswerCache:
    """The passages of each (method, URL, query, k) asked before, shared by every client in the process (as
    DSPy's cache is): a bounded LRU, locked because sync calls come from any thread."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._answers: OrderedDict[tuple[str, str, str, int], Passages] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str, int]) -> Passages | None:
        with self._lock:
            passages = self._answers.get(key)
            if passages is not None:
                self._answers.move_to_end(key)
            return passages

    def put(self, key: tuple[str, str, str, int], passages: Passages) -> None:
        with self._lock:
            self._answers[key] = passages
            self._answers.move_to_end(key)
            while len(self._answers) > self._size:
                self._answers.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()


_cache = _AnswerCache(CACHE_SIZE)


def clear_cache() -> None:
    """Forget every answer kept in memory (the next call of each query asks the server again)."""
    _cache.clear()


class ColBERTv2:
    """DSPy's ``ColBERTv2(url="http://0.0.0.0", port=None, post_requests=False)``: ``port``, when given, is
    appended to ``url`` (``f"{url}:{port}"``), as DSPy does. ``timeout`` (seconds, DSPy's 10) is dsr's."""

    def __init__(
        self,
        url: str = "http://0.0.0.0",
        port: str | int | None = None,
        post_requests: bool = False,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.post_requests = post_requests
        self.url = f"{url}:{port}" if port else url
        self.timeout = timeout

    @property
    def method(self) -> Method:
        return "POST" if self.post_requests else "GET"

    def __call__(self, query: str, k: int = 10, simplify: bool = False) -> list[str] | list[dotdict]:
        """The ``k`` best passages for ``query`` (dotdicts), or their texts with ``simplify=True``."""
        key = _key(self.url, self.method, query, k)
        passages = _cache.get(key)
        if passages is None:
            passages = _fetch(self.url, self.method, query, k, self.timeout)
            _cache.put(key, passages)
        return _shaped(passages, simplify)

    async def acall(self, query: str, k: int = 10, simplify: bool = False) -> list[str] | list[dotdict]:
        """``__call__`` without blocking the event loop (the same cache)."""
        key = _key(self.url, self.method, query, k)
        passages = _cache.get(key)
        if passages is None:
            passages = await _afetch(self.url, self.method, query, k, self.timeout)
            _cache.put(key, passages)
        return _shaped(passages, simplify)

    def __repr__(self) -> str:
        return f"ColBERTv2(url={self.url!r}, post_requests={self.post_requests})"


def _key(url: str, method: Method, query: str, k: int) -> tuple[str, str, str, int]:
    """The cache key; a GET's k is checked first, so an oversized k is refused before anything is looked up."""
    if method == "GET" and k > GET_K_LIMIT:
        raise ColBERTv2Error(
            f"ColBERTv2 at {url}: k={k}, but only k <= {GET_K_LIMIT} is supported for GET requests (the hosted "
            "ColBERTv2 server's limit, as DSPy checks); ask for fewer or use post_requests=True",
            url=url,
        )
    return (method, url, query, k)


def _request_options(method: Method, query: str, k: int) -> dict[str, Any]:
    """DSPy's requests: the query and k as URL parameters for a GET, as a JSON body for a POST."""
    payload = {"query": query, "k": k}
    if method == "GET":
        return {"params": payload}
    return {"json": payload, "headers": {"Content-Type": "application/json; charset=utf-8"}}


def _fetch(url: str, method: Method, query: str, k: int, timeout: float) -> Passages:
    import httpx2

    try:
        response = httpx2.request(method, url, timeout=timeout, **_request_options(method, query, k))
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        raise _transport_error(url, method, timeout, exc) from None
    return _passages(url, method, query, k, response)


async def _afetch(url: str, method: Method, query: str, k: int, timeout: float) -> Passages:
    import httpx2

    try:
        async with httpx2.AsyncClient(timeout=timeout) as client:
            response = await client.request(method, url, **_request_options(method, query, k))
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        raise _transport_error(url, method, timeout, exc) from None
    return _passages(url, method, query, k, response)


def _transport_error(url: str, method: Method, timeout: float, exc: Exception) -> ColBERTv2Error:
    """No answer at all: the server is not there (connection refused, unknown host), too slow, or the URL is bad."""
    import httpx2

    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException):
        what = f"no answer to {method} within {timeout} s ({detail})"
    elif isinstance(exc, httpx2.ConnectError):
        what = f"cannot connect ({detail}); is the ColBERTv2 server running at this URL?"
    elif isinstance(exc, (httpx2.InvalidURL, httpx2.UnsupportedProtocol)):
        what = f"not a usable http(s) URL ({detail})"
    else:
        what = f"{method} failed: {type(exc).__name__}: {detail}"
    return ColBERTv2Error(f"ColBERTv2 at {url}: {what}", url=url)


def _passages(url: str, method: Method, query: str, k: int, response: httpx2.Response) -> Passages:
    """The first ``k`` passages of a reply, each with ``long_text``; anything else is a ColBERTv2Error."""
    where = f"ColBERTv2 at {url} ({method}, query {query!r}, k={k})"
    status = response.status_code
    if status != 200:
        raise ColBERTv2Error(
            f"{where}: the server answered HTTP {status}: {_snippet(response.text)}", url=url, status_code=status
        )
    try:
        body = response.json()
    except ValueError:
        raise ColBERTv2Error(
            f"{where}: the reply is not JSON: {_snippet(response.text)}", url=url, status_code=status
        ) from None
    if not isinstance(body, dict):
        raise ColBERTv2Error(
            f'{where}: the reply is a JSON {type(body).__name__}, not an object {{"topk": [...]}}',
            url=url,
            status_code=status,
        )
    if body.get("error"):
        message = body.get("message", "Unknown error")
        raise ColBERTv2Error(f"{where}: the server returned an error: {message}", url=url, status_code=status)
    topk = body.get("topk")
    if not isinstance(topk, list):
        found = "has no 'topk'" if "topk" not in body else f"has a 'topk' that is a {type(topk).__name__}"
        raise ColBERTv2Error(
            f'{where}: the reply {found}; expected {{"topk": [{{"text": ..., "pid": ..., "score": ...}}]}}, '
            f"got {_snippet(response.text)}",
            url=url,
            status_code=status,
        )
    return tuple(_passage(where, i, item, status, url) for i, item in enumerate(topk[:k]))


def _passage(where: str, index: int, item: Any, status: int, url: str) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        problem = "has no string 'text'" if isinstance(item, dict) else f"is a {type(item).__name__}, not an object"
        raise ColBERTv2Error(f"{where}: passage {index} of 'topk' {problem}: {item!r}", url=url, status_code=status)
    return {**item, "long_text": item["text"]}


def _shaped(passages: Passages, simplify: bool) -> list[str] | list[dotdict]:
    """Fresh objects for each call: a caller changing a passage does not change what the cache holds."""
    if simplify:
        return [passage["long_text"] for passage in passages]
    return [dotdict(passage) for passage in passages]


def _snippet(text: str) -> str:
    return repr(text[:_BODY_SNIPPET] + ("..." if len(text) > _BODY_SNIPPET else ""))


_NEEDS_COLBERT = frozenset({"ColBERTv2RetrieverLocal", "ColBERTv2RerankerLocal"})


def __getattr__(name: str) -> Any:
    if name in _NEEDS_COLBERT:
        raise AttributeError(
            f"dsr does not have DSPy's {name!r}: it runs the colbert package in process, which dsr does not "
            "(instead: ColBERTv2 against a ColBERTv2 server, or dsr.retrievers.Embeddings over your corpus)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ColBERTv2", "ColBERTv2Error", "clear_cache"]
