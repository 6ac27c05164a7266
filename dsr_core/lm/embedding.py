"""Embedder: DSPy's ``dspy.Embedder``, text to vectors through an OpenAI-compatible ``/embeddings`` endpoint or a
function of your own.

A string model is resolved as ``LM`` resolves one (``providers.resolve``: ``"openai/text-embedding-3-small"``,
``api_base=`` for any other compatible server, the provider's key variable or ``api_key_env``) and sent through
the openai SDK's ``embeddings.create``. Inputs go out in batches of ``batch_size``; unlike DSPy, which sends the
batches one after another, they are sent concurrently (at most ``max_concurrency`` at once), since they are
independent requests and a large corpus is otherwise bound by round trips. Each batch's vectors are cached in
dsr's cache under a key made of the model, the batch and the request parameters, never the api key or the base
URL (as DSPy's key leaves them out), so the same text embedded through two replicas hits one entry.

A callable model takes a list of strings and returns one vector per string (a 2-D array or a list of lists);
it is called once per batch, the batches one after another (a local model is seldom safe to call from several
threads at once). Its vectors are not cached: a function is no stable cache key (its weights may change under
the same name), and a local model needs no saving of round trips.

numpy is imported on first use, so ``import dsr_core`` does not load it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import settings as _settings
from .._async import is_async_callable, run_sync
from ..cache import Cache, cache_enabled_globally, request_key
from ..environment import as_secret, secret
from ..errors import LMAuthenticationError
from ..runtime import runtime
from .client import DEFAULT_API_KEY_ENV, DEFAULT_BASE_URL, _strip_userinfo, redact_keys, resolve_endpoint
from .failures import exhausted_error, fatal_error
from .pools import ClientPools, LoopClients
from .retry import is_transient

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# connection settings: they pick the endpoint, so they are no request parameter and never part of the cache key
_CONNECTION_KEYS = frozenset({"api_key", "api_base", "base_url", "api_key_env"})
# request parameters embeddings.create takes by name; any other goes in the request body as it is (extra_body)
_SDK_PARAMETERS = frozenset({"dimensions", "encoding_format", "user"})


def embedding_entry_problem(value: Any) -> str | None:
    """Why ``value`` is not an embeddings cache entry (``{"embeddings": [[float, ...], ...]}``); None when it is.

    Checked on the way in and out of the cache, as ``cache.entry_problem`` is for LM responses: an entry of
    another shape (a hand edit, another tool) would otherwise come back as a ragged or non-numeric array."""
    if not isinstance(value, dict):
        return f"entry is a JSON {type(value).__name__}, not an object"
    vectors = value.get("embeddings")
    if not isinstance(vectors, list) or not vectors:
        return "'embeddings' is missing or not a non-empty list"
    for vector in vectors:
        if not isinstance(vector, list) or not vector:
            return "'embeddings' holds an item that is not a non-empty list"
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            return "'embeddings' holds a vector with a value that is not a number"
    return None


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with dsr's dependencies (pyarrow, datasets, optuna)
        raise ImportError("dsr's Embedder, KNN and retrievers need numpy: `pip install numpy`") from None
    return numpy


class Embedder:
    """``Embedder("openai/text-embedding-3-small")`` or ``Embedder(my_function)``; ``embedder(texts)`` is a
    float32 array, one row per text (1-D for a single string).

    ``batch_size`` and ``caching`` are the defaults a call may override; other keywords are request parameters
    sent with every batch (``dimensions=256``, ``user=...``; for a callable, keywords it is called with).
    ``api_base``, ``api_key`` and ``api_key_env`` choose the endpoint and its key as for ``LM``; the key is kept
    in one private attribute and never reaches a repr, the cache or an error message. ``num_retries`` and
    ``timeout`` are the SDK's retries and per-request timeout; ``max_concurrency`` caps the batches in flight.
    """

    def __init__(
        self,
        model: str | Callable[..., Any],
        batch_size: int = 200,
        caching: bool = True,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        num_retries: int = 3,
        timeout: float = 120.0,
        max_concurrency: int = 8,
        cache_store: Cache | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, str) and not callable(model):
            raise ValueError(f"`model` in `Embedder` must be a string or a callable, but got {type(model)}.")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"Embedder: batch_size must be a positive integer, got {batch_size!r}")
        if max_concurrency < 1:
            raise ValueError(f"Embedder: max_concurrency must be at least 1, got {max_concurrency!r}")
        self.model = model
        self.batch_size = batch_size
        self.caching = caching
        self.default_kwargs = dict(kwargs)
        self.num_retries = num_retries
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self._cache_store = cache_store
        self.__api_key = as_secret(api_key)  # a Secret (its repr hides it), name-mangled as in LM
        self.provider = None
        self.model_name: str | None = None
        self.api_base: str | None = None
        self.api_key_env = api_key_env or DEFAULT_API_KEY_ENV
        self._key_required = False
        if isinstance(model, str):
            self.provider, self.model_name, self.api_base, self.api_key_env, self._key_required = resolve_endpoint(
                model, api_base, api_key_env
            )
        self._pools = ClientPools()

    def __repr__(self) -> str:
        if not isinstance(self.model, str):
            return f"Embedder(model={getattr(self.model, '__name__', type(self.model).__name__)}, batch_size={self.batch_size})"
        base = f", api_base={_strip_userinfo(self.api_base)!r}" if self.api_base else ""
        return f"Embedder(model={self.qualified_model!r}{base}, batch_size={self.batch_size})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Embedder:
        return self  # a shared client, as an LM is: copying a program (KNNFewShot's) shares it

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("an Embedder is not picklable (it holds an api key and live connections)")

    @property
    def qualified_model(self) -> str:
        """The model name with its provider prefix (``openai/text-embedding-3-small``); a callable's name."""
        if self.provider is None:
            return getattr(self.model, "__qualname__", type(self.model).__qualname__)
        return f"{self.provider.name}/{self.model_name}"

    # -- the call ----------------------------------------------------------------------------------------------
    def _prepare(
        self, inputs: str | Sequence[str], batch_size: int | None, caching: bool | None, kwargs: dict[str, Any]
    ) -> tuple[list[list[str]], bool, dict[str, Any], bool]:
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("All inputs must be strings.")
        size = batch_size or self.batch_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"Embedder: batch_size must be a positive integer, got {size!r}")
        connection = sorted(_CONNECTION_KEYS & set(kwargs))
        if connection:
            raise ValueError(
                f"Embedder: {', '.join(connection)} choose the endpoint and are given when the Embedder is made "
                f"(Embedder(model, {connection[0]}=...)), not per call"
            )
        merged = {**self.default_kwargs, **kwargs}
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        return batches, self.caching if caching is None else caching, merged, single

    @staticmethod
    def _finish(vectors: list[Any], single: bool) -> np.ndarray:
        np = _numpy()
        array = np.asarray(vectors, dtype=np.float32)
        return array[0] if single else array

    def __call__(
        self,
        inputs: str | Sequence[str],
        batch_size: int | None = None,
        caching: bool | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """The embeddings of ``inputs``: a 1-D float32 array for one string, a 2-D one (a row per string) for a list.

        ``batch_size`` and ``caching`` override the Embedder's for this call; keywords override its request
        parameters. Raises ValueError when an input is not a string."""
        if isinstance(self.model, str) or is_async_callable(self.model):
            return run_sync(self.acall(inputs, batch_size, caching, **kwargs))
        batches, _, merged, single = self._prepare(inputs, batch_size, caching, kwargs)
        vectors: list[Any] = []
        for batch in batches:
            vectors.extend(self._checked(batch, self.model(batch, **merged)))
        return self._finish(vectors, single)

    async def acall(
        self,
        inputs: str | Sequence[str],
        batch_size: int | None = None,
        caching: bool | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """``__call__`` for async code: a string model's batches go out concurrently; a synchronous callable runs
        in a worker thread, so the event loop is not blocked while a local model computes."""
        batches, use_cache, merged, single = self._prepare(inputs, batch_size, caching, kwargs)
        vectors: list[Any] = []
        if isinstance(self.model, str):
            limit = asyncio.Semaphore(self.max_concurrency)

            async def one(batch: list[str]) -> list[list[float]]:
                async with limit:
                    return await self._embed_batch(batch, use_cache, merged)

            for result in await asyncio.gather(*(one(batch) for batch in batches)):
                vectors.extend(result)
        else:
            model = self.model
            for batch in batches:
                if is_async_callable(model):
                    result = await model(batch, **merged)
                else:
                    result = await asyncio.to_thread(model, batch, **merged)
                vectors.extend(self._checked(batch, result))
        return self._finish(vectors, single)

    def _checked(self, batch: list[str], result: Any) -> Any:
        """A callable's vectors for one batch, after checking there is one per input."""
        try:
            count = len(result)
        except TypeError:
            raise TypeError(
                f"Embedder: the model function {self.qualified_model} returned {type(result).__name__}, not one "
                "vector per input (a 2-D array or a list of lists)"
            ) from None
        if count != len(batch):
            raise ValueError(
                f"Embedder: the model function {self.qualified_model} returned {count} vectors for a batch of "
                f"{len(batch)} inputs"
            )
        return result

    # -- a string model ----------------------------------------------------------------------------------------
    def _cache(self, use_cache: bool) -> Cache | None:
        if not (use_cache and _settings.get("cache") and cache_enabled_globally()):
            return None
        return self._cache_store or runtime().default_cache()

    async def _embed_batch(self, batch: list[str], use_cache: bool, params: dict[str, Any]) -> list[list[float]]:
        store = self._cache(use_cache)
        key = None
        if store is not None:
            key = request_key({"kind": "embeddings", "model": self.qualified_model, "input": batch, **params})
            hit = store.get(key, embedding_entry_problem)
            if hit is not None and len(hit["embeddings"]) == len(batch):
                return [list(v) for v in hit["embeddings"]]
        vectors = await self._request(batch, params)
        if store is not None and key is not None:
            store.put(key, {"embeddings": vectors}, embedding_entry_problem)
        return vectors

    async def _request(self, batch: list[str], params: dict[str, Any]) -> list[list[float]]:
        import openai

        state = await self._state()
        named = {k: v for k, v in params.items() if k in _SDK_PARAMETERS}
        extra = {k: v for k, v in params.items() if k not in _SDK_PARAMETERS}
        try:
            response = await state.client().embeddings.create(
                model=self.model_name, input=batch, **named, **({"extra_body": extra} if extra else {})
            )
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            url = self._endpoint()
            if is_transient(exc):
                tries = self.num_retries + 1
                raise exhausted_error(
                    exc, model=self.model_name or "", url=url, tries=tries, timeout=self.timeout, redact=self._redact
                ) from None
            raise fatal_error(
                exc, model=self.model_name or "", url=url, key_source=self._key_source, redact=self._redact
            ) from None
        data = sorted(response.data, key=lambda item: item.index)  # the API gives an index: do not trust the order
        if len(data) != len(batch):
            raise ValueError(
                f"Embedder {self.qualified_model}: {self._endpoint()} returned {len(data)} embeddings for a batch "
                f"of {len(batch)} inputs"
            )
        return [[float(x) for x in item.embedding] for item in data]

    async def _state(self) -> LoopClients:
        loop = asyncio.get_running_loop()
        state = self._pools.by_loop.get(id(loop))
        if state is not None and state.loop is loop:
            return state
        return await self._pools.open(self._new_clients)

    def _new_clients(self) -> tuple[list[Any], None]:
        import openai

        client = openai.AsyncOpenAI(
            api_key=self._api_key(), base_url=self.api_base, max_retries=self.num_retries, timeout=self.timeout
        )
        return [client], None

    def _key(self) -> str | None:
        """The key passed, else the key variable's value (read through ``environment.secret``)."""
        found = self.__api_key or secret(self.api_key_env)
        return found.get_secret_value() if found is not None else None

    def _api_key(self) -> str:
        key = self._key()
        if key:
            return key
        if not (self.api_base is None or self._key_required):
            return "not-needed"  # a local server takes any key
        raise LMAuthenticationError(
            f"no API key for embedding model {self.model_name!r}: pass api_key=..., set {self.api_key_env}, "
            "or give api_base= for a local OpenAI-compatible server",
            model=self.model_name,
        )

    def _key_source(self) -> str:
        if self.__api_key:
            return f"the key passed as api_key= (not {self.api_key_env})"
        if secret(self.api_key_env) is not None:
            return f"the key in {self.api_key_env}"
        return f"{self.api_key_env} is not set, so a placeholder key was sent"

    def _endpoint(self) -> str:
        return (_strip_userinfo(self.api_base) or DEFAULT_BASE_URL).rstrip("/")

    def _redact(self, text: str) -> str:
        return redact_keys(text, {self._key() or "", *self._pools.api_keys()})


__all__ = ["Embedder", "embedding_entry_problem"]
