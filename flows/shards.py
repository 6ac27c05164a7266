"""What the evaluate and optimize flows share: loading a split, sizing shards, and submitting shard tasks
whose persisted results are replayed honestly.

A shard task's result is persisted under its inputs (INPUTS + TASK_SOURCE, the inputs including the code
digest of the program and metric), so an interrupted run, or another run of the same code on the same
data, gets finished shards back without paying for them again. Two rules keep that honest:

- a replayed shard is reported as replayed: its rows carry ``replayed=True`` and no LM calls or tokens,
  because none were made for them this time;
- a persisted result with rows that failed for an infrastructure reason (endpoint down, timeouts) is not
  final: that shard is computed again (``refresh_cache``), and the new result replaces the stored one.
  Its successful rows cost nothing the second time: their LM calls come from the LM cache.

With the LM cache off (``lm.cache = false`` or ``DSR_CACHE=0``) nothing is replayed: every shard is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import dsr_core as dsr
from dsr_core.cache import cache_enabled_globally
from dsr_core.evaluate import EvaluationRecord

from .config import RunConfig

CACHED_STATE = "Cached"  # the name Prefect gives a task run's Completed state when its result was read back


def auto_shard_size(n: int, workers: int) -> int:
    """A few shards per worker: enough to balance, few enough that Prefect's ~10 ms per task is noise."""
    shards = max(1, min(n, workers * 3))
    return max(1, math.ceil(n / shards))


def load_split(config: RunConfig, which: str) -> list[dsr.Example]:
    source = getattr(config.data, which)
    if source is None:
        raise dsr.DsrError(f"data.{which} is not set")
    return dsr.DataLoader().load(
        source,
        input_keys=config.data.input_keys,
        rename=config.data.rename,
        limit=config.data.limit,
        split=getattr(config.data, f"{which}_split") or config.data.split,
        config=config.data.config,
    )


def replays_allowed(config: RunConfig) -> bool:
    """Persisted shard results may be replayed only while LM responses may be: with the LM cache off the
    user asked for fresh answers, and a replayed shard would give them old ones."""
    return config.lm.cache and cache_enabled_globally()


# -- the two kinds of shard result -------------------------------------------------------------------------------


def _records_need_recompute(records: list[dict[str, Any]]) -> bool:
    return any(record.get("transient") for record in records)


def _records_replayed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [EvaluationRecord.from_dict(record).as_replayed().to_dict() for record in records]


def _work_needs_recompute(result: dict[str, Any]) -> bool:
    return bool(result.get("transient"))


def _work_replayed(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "usage": {}, "replayed": True}


KINDS = {
    "records": (_records_need_recompute, _records_replayed),
    "work": (_work_needs_recompute, _work_replayed),
}


@dataclass
class _Submitted:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Any


class ShardBatch:
    """Shard tasks of one kind submitted together; ``results()`` waits for them, marks replays and computes
    again, concurrently, every replayed shard whose result holds an infrastructure failure."""

    def __init__(self, task: Any, kind: str, *, replay: bool = True) -> None:
        self.task = task if replay else task.with_options(refresh_cache=True)
        self.refresh_task = task.with_options(refresh_cache=True)
        self.needs_recompute, self.as_replayed = KINDS[kind]
        self.submitted: list[_Submitted] = []
        self._results: list[Any] | None = None

    def submit(self, *args: Any, **kwargs: Any) -> int:
        """Submit one shard; returns its position in ``results()``."""
        self.submitted.append(_Submitted(args, kwargs, self.task.submit(*args, **kwargs)))
        return len(self.submitted) - 1

    def results(self) -> list[Any]:
        if self._results is None:
            self._results = self._collect()
        return self._results

    def records(self) -> list[Any]:
        """Every shard's records in one list (for batches of evaluation shards)."""
        return [record for records in self.results() for record in records]

    def _collect(self) -> list[Any]:
        values = [s.future.result() for s in self.submitted]
        replayed = [s.future.state.name == CACHED_STATE for s in self.submitted]
        again = {
            i: self.refresh_task.submit(*s.args, **s.kwargs)
            for i, s in enumerate(self.submitted)
            if replayed[i] and self.needs_recompute(values[i])
        }
        for i, future in again.items():
            values[i] = future.result()
            replayed[i] = False
        return [self.as_replayed(v) if r else v for v, r in zip(values, replayed, strict=True)]
