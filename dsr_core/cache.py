"""The LM response cache: an in-memory LRU in front of an on-disk store that processes share.

The key is the sha256 of the normalized request (model, messages, sampling parameters, rollout id),
never the api key or the base URL, so the same request to two replicas of one model hits the same entry.
Disk entries are one JSON file each, written to a temporary name and renamed into place, so concurrent
processes never see a half-written entry; an entry that fails to parse anyway, or parses to something that
is not an LM response (``entry_problem``), is a miss, never a crash, and the fresh response replaces it.
No lock on the hot path: the LRU is a dict touched only by atomic operations, and disk writes happen on
one background thread (the runtime's) so the event loop never waits for the file system (``flush()``
waits for them; they also finish before the interpreter exits).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

from .environment import variable
from .runtime import runtime

log = logging.getLogger(__name__)

DEFAULT_MEMORY_ENTRIES = 100_000


def default_cache_dir() -> Path:
    """``DSR_CACHE_DIR``, else ``dsr`` in the XDG cache folder (``~/.cache/dsr``)."""
    configured = variable("DSR_CACHE_DIR")
    if configured is not None:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dsr"


def request_key(request: dict[str, Any]) -> str:
    """sha256 over a canonical JSON form of the request: sorted keys, no whitespace, UTF-8.

    orjson writes it (the json module took a tenth of a cached call's CPU). Its bytes are the json module's
    (``sort_keys``, compact separators, ``ensure_ascii=False``) for every value a chat request holds, except
    some floats below 1e-4, which it writes in another notation (``1e-7``, ``0.00001``): such a request misses the
    entries older versions wrote, once. What orjson declines (non-string keys, integers past 64 bits) takes the
    json module's path, as before.
    """
    try:
        blob = orjson.dumps(request, option=orjson.OPT_SORT_KEYS, default=str)
    except orjson.JSONEncodeError:
        blob = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def entry_problem(value: Any) -> str | None:
    """Why ``value`` is not a response entry as ``LM.acall`` writes and reads it; None when it is one.

    An entry is ``{"texts": [str, ...], "finish_reasons": [str, ...], "usage": {"prompt_tokens": int,
    "completion_tokens": int}, "tool_calls": [[{...}, ...] or None, ...]}`` with at least one text (the last
    three keys optional; ``tool_calls``, one item per text, only for a reply that called tools). Checked on every way
    into the memory tier (a disk read, a put) because valid JSON of another shape, from a hand edit, another
    tool or an older format, would otherwise fail its example on every run with a bare KeyError or TypeError.
    """
    if not isinstance(value, dict):
        return f"entry is a JSON {type(value).__name__}, not an object"
    texts = value.get("texts")
    if not isinstance(texts, list) or not texts:
        return "'texts' is missing or not a non-empty list"
    if not all(isinstance(t, str) for t in texts):
        return "'texts' holds a value that is not a string"
    finish = value.get("finish_reasons", [])
    if not isinstance(finish, list) or not all(isinstance(f, str) for f in finish):
        return "'finish_reasons' is not a list of strings"
    usage = value.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            return "'usage' is not an object"
        for name in ("prompt_tokens", "completion_tokens"):
            tokens = usage.get(name, 0)
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
                return f"'usage.{name}' is not a non-negative integer"
    calls = value.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list) or len(calls) != len(texts):
            return "'tool_calls' is not a list with one item per text"
        for item in calls:
            if item is not None and not (isinstance(item, list) and all(isinstance(c, dict) for c in item)):
                return "'tool_calls' holds an item that is neither null nor a list of objects"
    return None


class Cache:
    """Two tiers: ``memory_entries`` most recent entries in memory, everything on disk under ``directory``."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        memory_entries: int = DEFAULT_MEMORY_ENTRIES,
        disk: bool = True,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.memory_entries = memory_entries
        self.disk = disk
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._made_dirs: set[str] = set()
        self._last_write: Future[None] | None = None

    def __repr__(self) -> str:
        return f"Cache(directory={str(self.directory)!r}, memory={len(self._memory)}, disk={self.disk})"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str, check: Callable[[Any], str | None] | None = None) -> dict[str, Any] | None:
        """The entry under ``key``, or None. ``check`` says why a disk entry is not of the caller's shape
        (default: ``entry_problem``, an LM response); the Embedder passes its own, for embedding entries."""
        memory = self._memory
        value = memory.get(key)
        if value is not None:
            try:
                memory.move_to_end(key)
            except KeyError:  # evicted by another thread between get and move: still a hit
                pass
            self.hits += 1
            return value
        if self.disk:
            value = self._read_disk(key, check or entry_problem)
            if value is not None:
                self._remember(key, value)
                self.hits += 1
                return value
        self.misses += 1
        return None

    def put(self, key: str, value: dict[str, Any], check: Callable[[Any], str | None] | None = None) -> None:
        problem = (check or entry_problem)(value)
        if problem is not None:  # a caller's bug: keep it out of both tiers rather than fail the call
            log.warning("not caching %s: %s", key, problem)
            return
        self._remember(key, value)
        if self.disk:
            self._last_write = runtime().cache_writer().submit(self._write_disk, key, value)

    def flush(self) -> None:
        """Wait until every entry put so far is on disk."""
        if self._last_write is not None:
            self._last_write.result()

    def _remember(self, key: str, value: dict[str, Any]) -> None:
        memory = self._memory
        memory[key] = value
        while len(memory) > self.memory_entries:
            try:
                memory.popitem(last=False)
            except KeyError:
                break

    def _read_disk(self, key: str, check: Callable[[Any], str | None] = entry_problem) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cache entry %s unreadable (%s); treating as a miss", path, exc)
            return None
        try:
            value = json.loads(data)
        except ValueError as exc:
            problem: str | None = f"not JSON: {exc}"
        else:
            problem = check(value)
        if problem is None:
            return value  # type: ignore[no-any-return]
        # Removed, so it is reported once even if the call that would replace it fails.
        log.warning("cache entry %s is corrupt (%s); treating as a miss and removing it", path, problem)
        try:
            path.unlink()
        except OSError:
            pass
        return None

    def _write_disk(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        parent = str(path.parent)
        try:
            if parent not in self._made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(parent)
            tmp = path.with_name(f".{key}.{uuid.uuid4().hex}.tmp")
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate in a reply: JSON escapes it, and it reads back the same
                data = json.dumps(value, separators=(",", ":")).encode("ascii")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk costs the cache entry, not the call
            log.warning("could not write cache entry %s: %s", path, exc)

    def clear_memory(self) -> None:
        self._memory.clear()

    def clear(self) -> None:
        """Drop every entry, in memory and on disk."""
        self.flush()
        self._memory.clear()
        if self.directory.exists():
            shutil.rmtree(self.directory)
        self._made_dirs.clear()

    def disk_stats(self) -> dict[str, Any]:
        self.flush()
        entries = 0
        size = 0
        if self.directory.exists():
            for path in self.directory.glob("*/*.json"):
                entries += 1
                size += path.stat().st_size
        return {"directory": str(self.directory), "entries": entries, "bytes": size}


def get_default_cache() -> Cache:
    """The process's shared cache (the runtime's), created on first use and again if DSR_CACHE_DIR changes."""
    return runtime().default_cache()


def cache_enabled_globally() -> bool:
    """False when ``DSR_CACHE`` turns the LM cache off for the whole process."""
    return variable("DSR_CACHE")  # type: ignore[no-any-return]
