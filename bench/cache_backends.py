"""The LM cache's disk tier: dsr's per-entry JSON files against diskcache (SQLite), side by side in one run.

DSPy keeps its disk tier in diskcache's FanoutCache; dsr writes one JSON file per entry (written to a
temporary name and renamed into place, from a background writer thread). This measures what the choice
between them decides:

- writes per second (one thread, as the cache writer does) and reads per second from a fresh handle (the
  entries are on disk, the OS page cache warm: a new process reading a finished run's cache);
- cross-process safety: ``--processes`` processes write and read the same keys at once; every read must be
  either a miss or the exact entry written (a torn or foreign value is counted as corrupt), and every write
  must land (diskcache's ``set`` returns False when its SQLite lock times out);
- bytes on disk.

Usage: ``python bench/cache_backends.py [--entries 20000] [--processes 2] [--json out.json]``. Needs
diskcache (installed with the ``local`` extra). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def entry(i: int) -> dict[str, Any]:
    """A response entry of a typical size (about 600 bytes as JSON), distinct per key."""
    text = f"[[ ## reasoning ## ]]\nStep {i}: " + "the answer follows from the passage. " * 12
    return {
        "texts": [text + f"\n\n[[ ## answer ## ]]\n{i}\n\n[[ ## completed ## ]]"],
        "finish_reasons": ["stop"],
        "usage": {"prompt_tokens": 180 + i % 50, "completion_tokens": 90},
    }


def key(i: int) -> str:
    import hashlib

    return hashlib.sha256(f"request-{i}".encode()).hexdigest()


class JsonFiles:
    """dsr's disk tier itself (``dsr_core.cache.Cache`` with no memory tier), written synchronously."""

    name = "dsr JSON files"

    def __init__(self, directory: Path) -> None:
        from dsr_core.cache import Cache

        self.cache = Cache(directory, memory_entries=0)

    def set(self, k: str, value: dict[str, Any]) -> bool:
        self.cache._write_disk(k, value)
        return True

    def get(self, k: str) -> dict[str, Any] | None:
        return self.cache._read_disk(k)

    def close(self) -> None:
        pass


class DiskCache:
    """diskcache's FanoutCache with 16 shards as DSPy configures it, but storing JSON (``JSONDisk``): DSPy's
    default pickles entries, which dsr never does."""

    name = "diskcache FanoutCache (JSONDisk)"

    def __init__(self, directory: Path) -> None:
        import diskcache

        self.cache = diskcache.FanoutCache(
            str(directory), shards=16, timeout=1, size_limit=2**40, disk=diskcache.JSONDisk
        )

    def set(self, k: str, value: dict[str, Any]) -> bool:
        return bool(self.cache.set(k, value))

    def get(self, k: str) -> dict[str, Any] | None:
        return self.cache.get(k)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.cache.close()


BACKENDS = {"json": JsonFiles, "diskcache": DiskCache}


def size_on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def throughput(backend: str, entries: int, work: Path) -> dict[str, Any]:
    directory = work / backend
    values = [(key(i), entry(i)) for i in range(entries)]
    store = BACKENDS[backend](directory)
    started = time.perf_counter()
    failed = sum(not store.set(k, v) for k, v in values)
    write = time.perf_counter() - started
    store.close()
    fresh = BACKENDS[backend](directory)
    started = time.perf_counter()
    wrong = sum(fresh.get(k) != v for k, v in values)
    read = time.perf_counter() - started
    fresh.close()
    return {
        "writes_per_s": entries / write,
        "reads_per_s": entries / read,
        "failed_writes": failed,
        "wrong_reads": wrong,
        "bytes": size_on_disk(directory),
    }


def _contend(backend: str, directory: str, worker: int, entries: int, rounds: int, out: Any) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    store = BACKENDS[backend](Path(directory))
    failed = corrupt = hits = 0
    for r in range(rounds):
        for i in range(entries):
            k = key(i)
            if (i + worker + r) % 2 == 0:
                failed += not store.set(k, entry(i))
            else:
                got = store.get(k)
                if got is not None:
                    hits += 1
                    corrupt += got != entry(i)
    store.close()
    out.put({"failed_writes": failed, "corrupt_reads": corrupt, "hits": hits})


def contention(backend: str, processes: int, entries: int, work: Path) -> dict[str, Any]:
    directory = work / f"{backend}-shared"
    directory.mkdir()
    queue: Any = multiprocessing.get_context("spawn").Queue()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_contend, args=(backend, str(directory), w, entries, 3, queue)) for w in range(processes)
    ]
    started = time.perf_counter()
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    seconds = time.perf_counter() - started
    operations = processes * entries * 3
    return {
        "ops_per_s": operations / seconds,
        "failed_writes": sum(r["failed_writes"] for r in results),
        "corrupt_reads": sum(r["corrupt_reads"] for r in results),
        "hits": sum(r["hits"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dsr-cache-bench-"))
    try:
        results = {}
        for backend in BACKENDS:
            results[backend] = {
                **throughput(backend, args.entries, work),
                **{f"shared_{k}": v for k, v in contention(backend, args.processes, args.entries // 4, work).items()},
            }
            print(f"{backend}: {results[backend]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.entries} entries (~{len(json.dumps(entry(0)))} bytes each), {args.processes} processes sharing one cache\n"
    )
    print(
        "| disk tier | writes/s | reads/s (fresh handle) | MB on disk | shared: ops/s | shared: failed writes | shared: corrupt reads |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend, r in results.items():
        print(
            f"| {BACKENDS[backend].name} | {r['writes_per_s']:,.0f} | {r['reads_per_s']:,.0f} | {r['bytes'] / 1e6:.1f} "
            f"| {r['shared_ops_per_s']:,.0f} | {r['shared_failed_writes']} | {r['shared_corrupt_reads']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"entries": args.entries, "processes": args.processes, "results": results}))


if __name__ == "__main__":
    main()
