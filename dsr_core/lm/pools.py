"""An LM's SDK clients: one set per event loop (an httpx or aiohttp connection pool is bound to the loop
that made it), made on the loop's first call, held by the runtime until that loop ends and closed at its
shutdown (or by ``runtime().reset()``)."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..runtime import runtime

if TYPE_CHECKING:
    import openai

    from .transport import DirectChat

POOL_SIZE = 32  # connections per SDK client; see LoopClients


class LoopClients:
    """The SDK clients of one event loop, and how its chat requests go out.

    With aiohttp (the default) chat requests go through ``direct`` (transport.py: aiohttp configured by the
    SDK client, the SDK's errors) and the one SDK client serves the rest (the ``/models`` probe). With the
    SDK's httpx transport there is one client per ``POOL_SIZE`` connections, used in turn: httpcore scans
    every connection of its pool when a request starts and ends, so one pool of 256 connections spends most
    of the loop's time in that scan; eight pools of 32 do the same work at a fraction of the cost.
    """

    def __init__(
        self,
        clients: list[openai.AsyncOpenAI],
        loop: asyncio.AbstractEventLoop,
        owner: ClientPools,
        direct: DirectChat | None = None,
    ) -> None:
        self.clients = clients
        self.loop = loop
        self.owner = owner
        self.direct = direct
        self._next = 0
        self._closer: Any = None

    async def start_closer(self) -> None:
        """Close the clients when the loop shuts down.

        ``asyncio.run`` (and dsr's own loop at exit) finalize every live async generator before closing the
        loop, so a generator parked at ``yield`` is the one hook that runs inside a loop's shutdown; without
        it aiohttp sessions of finished loops are left open and complain. The runtime holds it (``hold``):
        an LM dropped before its loop ends must still close its clients at the loop's shutdown (a generator
        collected with its sessions would leave them unclosed).
        """

        async def closer() -> Any:
            try:
                yield
            finally:
                for client in [*self.clients, *([self.direct] if self.direct is not None else [])]:
                    try:
                        await (client.aclose() if client is self.direct else client.close())
                    except Exception:  # noqa: BLE001 - closing is best effort at shutdown
                        pass

        self._closer = closer()
        await self._closer.__anext__()

    def client(self) -> openai.AsyncOpenAI:
        self._next = (self._next + 1) % len(self.clients)  # one loop, one thread: no lock needed
        return self.clients[self._next]

    async def chat(self, body: dict[str, Any], timeout: float | None = None) -> bytes:
        """POST a chat-completions body; the raw answer, or the SDK's exception for a failure."""
        if self.direct is not None:
            return await self.direct.post(body, timeout)
        import httpx2

        options: Any = {"timeout": timeout} if timeout is not None else {}
        raw = await self.client().post("/chat/completions", body=body, cast_to=httpx2.Response, options=options)
        return raw.content  # type: ignore[no-any-return]

    def detach(self) -> None:
        """No longer the owner's clients for this loop: its next call on the loop makes new ones."""
        self.owner.forget(self)

    async def aclose(self) -> None:
        """Close the clients now (on their loop)."""
        if self._closer is not None:
            await self._closer.aclose()


class ClientPools:
    """One ``LoopClients`` per event loop an LM has run on; ``by_loop`` is read lock-free on every call."""

    def __init__(self) -> None:
        self.by_loop: dict[int, LoopClients] = {}
        self._lock = threading.Lock()

    async def open(self, make: Callable[[], tuple[list[openai.AsyncOpenAI], DirectChat | None]]) -> LoopClients:
        """New clients for the running loop (its first call): made, registered, held by the runtime."""
        loop = asyncio.get_running_loop()
        clients, direct = make()
        state = LoopClients(clients, loop, self, direct)
        await state.start_closer()
        with self._lock:  # taken once per event loop, never per call
            for loop_id, old in list(self.by_loop.items()):
                if old.loop.is_closed():
                    self.by_loop.pop(loop_id, None)
            self.by_loop[id(loop)] = state
        runtime().hold(state)
        return state

    def forget(self, state: LoopClients) -> None:
        with self._lock:
            if self.by_loop.get(id(state.loop)) is state:
                del self.by_loop[id(state.loop)]

    def api_keys(self) -> set[str]:
        """The keys the live clients were made with (for redaction)."""
        return {state.clients[0].api_key for state in list(self.by_loop.values())}


def sdk_clients(
    max_concurrency: int, api_key: str, base_url: str | None, timeout: float
) -> tuple[list[openai.AsyncOpenAI], DirectChat | None]:
    """SDK clients for one loop, and the direct chat transport when aiohttp is the transport: one SDK client
    and ``max_concurrency`` aiohttp connections; with httpx, ``POOL_SIZE`` connections per SDK client."""
    import openai  # deferred: importing the SDK costs ~0.45 s

    from ..environment import environment

    if environment().use_aiohttp and _has_aiohttp():
        from .transport import DirectChat

        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(limits=_httpx_limits(4), timeout=timeout),
        )
        return [client], DirectChat(client, max_concurrency, timeout)
    pools = max(1, math.ceil(max_concurrency / POOL_SIZE))
    per_pool = math.ceil(max_concurrency / pools)
    clients = [
        openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=_httpx_limits(per_pool), timeout=timeout),
        )
        for _ in range(pools)
    ]
    return clients, None


def _has_aiohttp() -> bool:
    """aiohttp comes with the openai[aiohttp] dependency; without it dsr uses the SDK's httpx transport."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def _httpx_limits(connections: int) -> Any:
    import httpx2

    return httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
