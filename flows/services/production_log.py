"""The production log of ``dsr serve``: every request/response it answers, for the drift monitor to read.

Records are appended (``ProductionLog``) as JSONL part files under a local folder or an ``s3://`` prefix, one
file per flush, named by time so readers (``read_production_log``) can pick up what is new. The log writer
flushes every ``flush_seconds`` whatever happens, so a killed server loses at most the last interval; see
``ProductionLog`` for what it does with records it cannot write.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..artifacts import filesystem, is_remote, join, open_for_writing

logger = logging.getLogger("dsr.serve")


def encode_record(record: dict[str, Any]) -> bytes:
    """One JSONL line, UTF-8. Text UTF-8 cannot hold (a lone surrogate) is written as a ``\\u`` escape, which
    JSON readers accept; a value JSON has no type for is written as its ``str()``. Raises only for a record
    that JSON cannot hold at all (a reference cycle, a key that is not text or a number)."""
    try:
        return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True, default=str) + "\n").encode("ascii")


def write_part(url: str, data: bytes) -> str:
    """Write ``data`` as a new part file ``{url}/date=YYYY-MM-DD/part-{epoch ms}-{random}.jsonl``; its URL.

    A local part is written under a temporary name and renamed, so a crash mid-write never leaves a truncated
    part for readers to choke on (an S3 object appears whole when its upload completes)."""
    now = time.time()
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    part = join(url, f"date={day}", f"part-{int(now * 1000):013d}-{uuid.uuid4().hex[:8]}.jsonl")
    if is_remote(part):
        with open_for_writing(part, "wb") as handle:
            handle.write(data)
        return part
    temporary = Path(f"{part}.tmp")
    try:
        with open_for_writing(str(temporary), "wb") as handle:
            handle.write(data)
        os.replace(temporary, part)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return part


class ProductionLog:
    """Buffered, append-only JSONL part files: ``{url}/date=YYYY-MM-DD/part-{epoch ms}-{random}.jsonl``.

    Parts are never rewritten (S3 cannot append); the time in the name lets the drift monitor read only
    parts written since its last run. A background thread flushes every ``flush_seconds`` (timed from the start
    of the previous flush, so a slow store does not stretch the interval) and as soon as ``flush_records`` are
    waiting; ``close()`` flushes the rest.

    No record can stop the log: a record is serialized when appended (``encode_record``), and one that cannot be
    is dropped with a warning. A failed write keeps its records, in order, for the next attempt (the thread then
    waits for the next scheduled flush rather than hammering a store that is down). What is buffered is bounded
    by ``max_buffer_bytes``; past it the oldest records are dropped. ``dropped`` counts every dropped record, and
    the writer thread logs a warning per reason once per flush. The thread catches and logs every error.
    """

    def __init__(
        self,
        url: str,
        *,
        flush_seconds: float = 5.0,
        flush_records: int = 500,
        max_buffer_bytes: int = 128 * 2**20,
    ) -> None:
        self.url = url
        self.flush_seconds = flush_seconds
        self.flush_records = flush_records
        self.max_buffer_bytes = max_buffer_bytes
        self.dropped = 0
        self._lines: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._unreported: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="dsr-production-log", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        """Records waiting to be written."""
        with self._lock:
            return len(self._lines)

    def append(self, record: dict[str, Any]) -> None:
        """Buffer one record. Never raises: the request that produced it has been answered already."""
        try:
            line = encode_record(record)
        except Exception as exc:  # noqa: BLE001 - any record, however broken, costs only itself
            with self._lock:
                self._drop_locked(1, f"not serializable as JSON ({type(exc).__name__}: {exc})"[:300])
            return
        with self._lock:
            self._lines.append(line)
            self._bytes += len(line)
            self._trim_locked()
            full = len(self._lines) >= self.flush_records
        if full:
            self._wake.set()

    def flush(self) -> str | None:
        """Write what is buffered as one part; its URL, or None when nothing was buffered.

        When the write fails, the records go back to the front of the buffer for the next flush and the error
        is raised."""
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
            self._bytes = 0
        if not lines:
            return None
        try:
            return write_part(self.url, b"".join(lines))
        except BaseException:
            self._requeue(lines)
            raise

    def close(self) -> None:
        """Stop the writer thread and flush the rest (a failure is logged; the records stay buffered)."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self._flush_logged()

    # -- inside -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        """Flush on schedule until closed. A failed flush is logged (never raised) and, until the next
        scheduled time, a full buffer does not trigger another attempt."""
        due = time.monotonic() + self.flush_seconds
        healthy = True
        while not self._closed:
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._closed or (not healthy and time.monotonic() < due):
                continue
            due = time.monotonic() + self.flush_seconds
            healthy = self._flush_logged()

    def _flush_logged(self) -> bool:
        """``flush()``, with any error logged instead of raised, then the drops reported. True when it worked."""
        try:
            self.flush()
            return True
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any storage failure
            logger.warning(
                "production log %s: could not write (%s: %s); %d record(s) kept for the next flush",
                self.url,
                type(exc).__name__,
                exc,
                self.buffered,
            )
            return False
        finally:
            self._report_drops()

    def _requeue(self, lines: list[bytes]) -> None:
        with self._lock:
            self._lines.extendleft(reversed(lines))
            self._bytes += sum(len(line) for line in lines)
            self._trim_locked()

    def _trim_locked(self) -> None:
        """Drop the oldest records while the buffer is over its bound (the caller holds the lock)."""
        evicted = 0
        while self._bytes > self.max_buffer_bytes and self._lines:
            self._bytes -= len(self._lines.popleft())
            evicted += 1
        if evicted:
            self._drop_locked(evicted, f"the buffer was over {self.max_buffer_bytes} bytes (oldest dropped first)")

    def _drop_locked(self, count: int, reason: str) -> None:
        self.dropped += count
        self._unreported[reason] += count

    def _report_drops(self) -> None:
        with self._lock:
            unreported, self._unreported = self._unreported, collections.Counter()
        for reason, count in unreported.items():
            logger.warning("production log %s: dropped %d record(s): %s", self.url, count, reason)


def read_production_log(url: str, since_ms: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records from parts written after ``since_ms`` (epoch ms), and the newest part's time (a watermark)."""
    fs = filesystem(url)
    root = join(url)
    try:
        paths = fs.glob(f"{root.rstrip('/')}/date=*/part-*.jsonl")
    except FileNotFoundError:
        paths = []
    newest, records = since_ms, list[dict[str, Any]]()
    for path in sorted(paths):
        stamp = int(path.rsplit("/", 1)[-1].split("-")[1])
        if stamp <= since_ms:
            continue
        newest = max(newest, stamp)
        with fs.open(path, "r") as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    return records, newest
