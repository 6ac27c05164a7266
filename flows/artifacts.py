"""Where a run's files go: a local folder by default, ``s3://bucket/prefix`` in production (fsspec/s3fs).

S3 credentials and the endpoint come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL); they are never written into a Prefect block or a config.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import dsr_core as dsr


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url``: only the endpoint, read from the environment (for MinIO, moto, ...)."""
    if url.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def join(url: str, *parts: str) -> str:
    if is_remote(url):
        return "/".join([url.rstrip("/"), *parts])
    return str(Path(url).expanduser().resolve().joinpath(*parts))


def open_file(url: str, mode: str) -> Any:
    import fsspec

    return fsspec.open(url, mode, **storage_options(url))


def filesystem(url: str) -> Any:
    """The fsspec filesystem for ``url`` (local or remote), with the endpoint from the environment."""
    import fsspec

    protocol = url.split("://", 1)[0] if is_remote(url) else "file"
    return fsspec.filesystem(protocol, **storage_options(url))


def open_for_writing(url: str, mode: str = "w") -> Any:
    """``open_file`` for writing; a local parent folder is created first (S3 has no folders to make)."""
    if not is_remote(url):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
    return open_file(url, mode)


def write_table(table: Any, artifacts_url: str, run_name: str, filename: str) -> str:
    """Write a pyarrow Table as Parquet to ``{artifacts_url}/{run_name}/{filename}``; return its URL."""
    import pyarrow.parquet as pq

    url = join(artifacts_url, run_name, filename)
    with open_for_writing(url, "wb") as handle:
        pq.write_table(table, handle)
    return url


def read_program_state(url: str) -> dict[str, Any]:
    if url.startswith("models:/"):
        raise dsr.DsrError(f"program.state {url!r}: loading from the MLflow registry is not available yet")
    try:
        with open_file(url if is_remote(url) else str(Path(url).expanduser()), "r") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        raise dsr.ProgramStateError(f"program.state {url!r}: no such file") from None
    except ValueError as exc:
        raise dsr.ProgramStateError(f"program.state {url!r}: not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise dsr.ProgramStateError(f"program.state {url!r}: not a JSON object")
    return state


def result_storage_for(artifacts_url: str) -> Any:
    """A saved Prefect filesystem block for task results under ``{artifacts_url}/results``.

    Saved, because Prefect reads a bare string as a block slug, and a resumed run in another process
    must find the same storage. The block holds the path and the endpoint, never credentials.
    """
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem

    basepath = join(artifacts_url, "results")
    name = "dsr-results-" + hashlib.sha256(basepath.encode()).hexdigest()[:16]
    if is_remote(basepath):
        block: Any = RemoteFileSystem(basepath=basepath, settings=storage_options(basepath))
    else:
        Path(basepath).mkdir(parents=True, exist_ok=True)
        block = LocalFileSystem(basepath=basepath)
    block.save(name, overwrite=True)
    return block
