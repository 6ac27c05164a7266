"""Optimizer checkpoints: ``{checkpoint_url}/{run name}/`` on a local disk or S3 (fsspec/s3fs).

Layout of one run's folder::

    checkpoint-000008.json   the 8th checkpoint written: optimizer state + what the flow needs to resume
    latest.json              the pointer: {"sequence": 8, "step": 7, "object": "checkpoint-000008.json", "sha256": ...}

A write is atomic: the checkpoint object is written first under a new name (the sequence number grows with
every write, never reused), then the pointer (a local write goes through a temporary file and a rename; an
S3 PUT is atomic). A crash between the two leaves the previous pointer and its object valid, and the
orphaned newer object is skipped by the next write (sequence numbers are never reused). The pointer's
sha256 detects a truncated or edited object. Writes are retried, because a checkpoint that fails to land
must not cost the trial behind it. Objects older than the last few are pruned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import dsr_core as dsr

from .artifacts import filesystem, is_remote, join

FORMAT = "dsr-checkpoint/1"
POINTER = "latest.json"
OBJECT_NAME = re.compile(r"checkpoint-(\d{6,})\.json")
KEEP = 3

log = logging.getLogger(__name__)


class CheckpointError(dsr.DsrError):
    """A checkpoint cannot be used: corrupt, truncated, or written by an incompatible run."""


class CheckpointStore:
    """Reads and writes the checkpoints of one run."""

    def __init__(self, checkpoint_url: str, run_name: str, *, retries: int = 6, backoff: float = 0.5) -> None:
        self.url = join(checkpoint_url, run_name)
        self.run_name = run_name
        self.fs = filesystem(self.url)
        self.retries = retries
        self.backoff = backoff
        self.sequence = 0  # of the last checkpoint read or written

    def _path(self, name: str) -> str:
        return join(self.url, name)

    # -- reading -----------------------------------------------------------------------------------------------

    def read_latest(self, *, repair: bool = True) -> dict[str, Any] | None:
        """The last checkpoint, or None when this run has none. Never returns a damaged one. A lost pointer
        is recovered from the newest checkpoint object (and, with ``repair``, written again)."""
        pointer_path = self._path(POINTER)
        try:
            raw = self._read_bytes(pointer_path)
        except FileNotFoundError:
            return self._recover_pointer(repair)
        pointer = self._parse(raw, pointer_path)
        if not isinstance(pointer, dict) or not {"sequence", "step", "object", "sha256"} <= set(pointer):
            raise CheckpointError(f"{pointer_path}: not a checkpoint pointer (expected sequence, step, object, sha256)")
        object_path = self._path(pointer["object"])
        try:
            data = self._read_bytes(object_path)
        except FileNotFoundError:
            raise CheckpointError(f"{object_path}: named by {pointer_path} but missing") from None
        if hashlib.sha256(data).hexdigest() != pointer["sha256"]:
            raise CheckpointError(
                f"{object_path}: content does not match the checksum in {pointer_path} (truncated or edited); "
                "refusing to resume from it. Move the folder away to start this run name afresh."
            )
        checkpoint = self._parse(data, object_path)
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
            found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise CheckpointError(f"{object_path}: format {found!r}, expected {FORMAT!r}")
        # A kill between an object's write and its pointer's leaves that object behind the pointer's back: the
        # run resumes from the pointer (the commit point) and its next write goes past the orphan, never over it.
        self.sequence = max(int(pointer["sequence"]), *self._sequences()[:1])
        return checkpoint

    def _sequences(self) -> list[int]:
        """Sequence numbers of the checkpoint objects in the folder, newest first."""
        try:
            names = [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(self.url, detail=False)]
        except FileNotFoundError:
            return []
        found = [m.group(1) for name in names if (m := OBJECT_NAME.fullmatch(name))]
        return sorted((int(n) for n in found), reverse=True)

    def _recover_pointer(self, repair: bool) -> dict[str, Any] | None:
        """No ``latest.json``: None for a new run; if checkpoint objects exist (the pointer was deleted or
        lost), the newest one that reads as a checkpoint of this run, with the pointer written again for it.
        Without the pointer there is no checksum to hold the object to, so it must parse, have the format
        and name this run; if none does, refuse rather than start over and overwrite them."""
        sequences = self._sequences()
        if not sequences:
            return None
        self.sequence = sequences[0]  # whatever happens, a new write never reuses an existing name
        for sequence in sequences:
            path = self._path(f"checkpoint-{sequence:06d}.json")
            try:
                data = self._read_bytes(path)
                checkpoint = self._parse(data, path)
            except (OSError, CheckpointError):
                continue
            if (
                isinstance(checkpoint, dict)
                and checkpoint.get("format") == FORMAT
                and checkpoint.get("run_name") == self.run_name
            ):
                if repair:
                    pointer = self._pointer(sequence, int(checkpoint.get("step", 0)), data)
                    self._retrying(self._put, self._path(POINTER), json.dumps(pointer).encode())
                    log.warning("%s was missing; recovered it from %s", self._path(POINTER), path)
                return checkpoint
        raise CheckpointError(
            f"{self.url}: holds checkpoint files ({len(sequences)}) but no {POINTER}, and none of them reads as a "
            "checkpoint of this run; refusing to start over on top of them. Move the folder away to start afresh."
        )

    @staticmethod
    def _pointer(sequence: int, step: int, data: bytes) -> dict[str, Any]:
        return {
            "sequence": sequence,
            "step": step,
            "object": f"checkpoint-{sequence:06d}.json",
            "sha256": hashlib.sha256(data).hexdigest(),
            "written_at": time.time(),
        }

    def _read_bytes(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as handle:
            return handle.read()

    @staticmethod
    def _parse(data: bytes, path: str) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc}); the checkpoint is corrupt") from None

    # -- writing -----------------------------------------------------------------------------------------------

    def write(self, step: int, checkpoint: dict[str, Any]) -> str:
        """Write a checkpoint taken after ``step``, then point ``latest.json`` at it. Returns the object's URL."""
        sequence = self.sequence + 1
        name = f"checkpoint-{sequence:06d}.json"
        if self.fs.exists(self._path(name)):  # another writer, or a folder this store did not read first
            raise CheckpointError(f"{self._path(name)} exists already; refusing to overwrite a checkpoint")
        data = json.dumps({"format": FORMAT, "step": step, **checkpoint}, ensure_ascii=False).encode()
        pointer = self._pointer(sequence, step, data)
        self._retrying(self._put, self._path(name), data)
        self._retrying(self._put, self._path(POINTER), json.dumps(pointer).encode())
        self.sequence = sequence
        self._prune(sequence)
        return self._path(name)

    def _put(self, path: str, data: bytes) -> None:
        if is_remote(path):
            with self.fs.open(path, "wb") as handle:
                handle.write(data)
            return
        directory = Path(path).parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{Path(path).name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def _retrying(self, fn: Any, *args: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return fn(*args)
            except (OSError, TimeoutError) as exc:  # s3fs raises OSError subclasses for HTTP/connection trouble
                if attempt == self.retries:
                    raise CheckpointError(f"cannot write checkpoint {args[0]}: {type(exc).__name__}: {exc}") from exc
                self.fs.invalidate_cache()
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _prune(self, sequence: int) -> None:
        for old in (sequence - KEEP, sequence - KEEP - 1):  # the ones this write made obsolete
            if old < 1:
                break
            try:
                self.fs.rm(self._path(f"checkpoint-{old:06d}.json"))
            except (FileNotFoundError, OSError):
                pass  # pruning is housekeeping; a leftover file harms nothing


def list_runs(checkpoint_url: str) -> list[dict[str, Any]]:
    """Every run under ``checkpoint_url`` with its last checkpoint's summary (or the error reading it)."""
    fs = filesystem(checkpoint_url)
    root = join(checkpoint_url)
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    runs = []
    for entry in sorted(entries, key=lambda e: e["name"]):
        if entry.get("type") != "directory":
            continue
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        store = CheckpointStore(checkpoint_url, name)
        try:
            checkpoint = store.read_latest(repair=False)
        except CheckpointError as exc:
            runs.append({"name": name, "status": "damaged", "error": str(exc)})
            continue
        if checkpoint is not None:
            runs.append({"name": name, **summary(checkpoint)})
    return runs


def summary(checkpoint: dict[str, Any]) -> dict[str, Any]:
    trials = checkpoint.get("trials", [])
    return {
        "status": checkpoint.get("status", "running"),
        "optimizer": checkpoint.get("optimizer"),
        "step": checkpoint.get("step"),
        "trials": len(trials),
        "best_score": checkpoint.get("state", {}).get("best_score"),
        "updated_at": checkpoint.get("updated_at"),
        "report": checkpoint.get("report"),
    }
