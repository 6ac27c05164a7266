"""Chat requests straight through aiohttp, configured by the openai SDK client and failing with its errors.

With the aiohttp transport (the default), the SDK's own request path is ``client.post`` -> the SDK's request
builder (options, URL joining, header merging: six httpx2 ``Headers`` and three URL parses per request) ->
an httpx2 client -> the SDK's vendored aiohttp transport -> aiohttp. On the event-loop thread that layering
cost about as much CPU per request as aiohttp itself (bench/RESULTS.md), and at hundreds of requests in
flight the loop thread is what bounds an evaluation. ``DirectChat`` keeps the two ends: the SDK client
(``openai.AsyncOpenAI``, made by dsr from the LM's settings) supplies the base URL and every header it
would send (its auth, user agent and platform headers), aiohttp sends the request as the SDK's transport
would, and a failure becomes exactly the exception the SDK raises (``APIStatusError`` subclasses built by the
SDK's own status mapping, ``APITimeoutError``, ``APIConnectionError``), so retries, error messages and
Retry-After handling do not know the difference. ``DSR_HTTP_TRANSPORT=httpx`` keeps the SDK's whole path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import aiohttp
    import openai

CHAT_PATH = "chat/completions"


class DirectChat:
    """POST ``/chat/completions`` for one event loop: one aiohttp session of ``connections`` connections."""

    def __init__(self, client: openai.AsyncOpenAI, connections: int, timeout: float) -> None:
        import aiohttp
        import httpx2

        self.client = client
        self.url = str(client.base_url).rstrip("/") + "/" + CHAT_PATH
        defaults = {key: value for key, value in client.default_headers.items() if isinstance(value, str)}
        self.headers = {**defaults, **client.auth_headers}  # what the SDK's header builder merges, minus omitted
        self.timeout = timeout
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        connector = aiohttp.TCPConnector(limit=connections, ssl=httpx2.create_ssl_context(trust_env=True))
        # the headers as the session's defaults: aiohttp merges them into each request without re-parsing
        self.session = aiohttp.ClientSession(connector=connector, headers=self.headers)

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """As the SDK's transport maps an httpx timeout: the same limit to connect, to get a connection from
        the pool, and between bytes read."""
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            import aiohttp

            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(
                sock_connect=seconds, sock_read=seconds, connect=seconds
            )
        return timeout

    async def post(self, body: dict[str, Any], timeout: float | None = None) -> bytes:
        """The response body of a 2xx answer; otherwise the SDK's exception for what went wrong."""
        import aiohttp

        try:
            data = orjson.dumps(body)  # a third of the json module's time, on the event-loop thread
        except orjson.JSONEncodeError:  # what orjson declines (non-str keys, ints past 64 bits): as before
            data = json.dumps(body, ensure_ascii=False).encode()
        try:
            async with self.session.post(
                self.url, data=data, timeout=self._timeout(timeout or self.timeout)
            ) as response:
                content = await response.read()
                status = response.status
                if status < 400:
                    return content
                headers = list(response.raw_headers)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise self._timed_out() from exc
        except aiohttp.ClientError as exc:
            raise self._connection_failed(exc) from exc
        raise self._status_error(status, headers, content)

    def _request(self) -> Any:
        import httpx2

        return httpx2.Request("POST", self.url)

    def _timed_out(self) -> openai.APITimeoutError:
        import openai

        return openai.APITimeoutError(request=self._request())

    def _connection_failed(self, exc: Exception) -> openai.APIConnectionError:
        import openai

        return openai.APIConnectionError(message=f"Connection error: {exc}", request=self._request())

    def _status_error(self, status: int, headers: list[tuple[bytes, bytes]], content: bytes) -> Exception:
        """The SDK's own error for this answer (its status-to-class mapping and message)."""
        import httpx2

        response = httpx2.Response(status, headers=headers, content=content, request=self._request())
        return self.client._make_status_error_from_response(response)  # noqa: SLF001 - the SDK's mapping

    async def aclose(self) -> None:
        await self.session.close()
