"""``dsr serve``: a registered program over HTTP, with a production log for monitoring.

- ``POST /predict`` takes a JSON object of the program's input fields and returns its output fields, the
  LM usage behind them, the model version that answered and a request id. Inputs are checked against the
  program before any LM call: missing, unknown, non-text or oversized fields get a 4xx naming the field.
- ``GET /health`` says which program and version are being served.
- Requests run concurrently on the server's event loop through the async LM (its client-side limits apply).
- ``models:/name@alias`` is re-resolved every ``refresh_seconds``: when the alias moves (a new champion),
  the new version is loaded and swapped in without a restart; requests in flight finish on the old one.
- With a bearer token configured (the NAME of an environment variable holding it), every route but
  ``/health`` needs ``Authorization: Bearer <token>``. The token and API keys never appear in responses,
  logs or the production log.
- Every request/response is appended to the production log (``ProductionLog``): JSONL part files under a
  local folder or an ``s3://`` prefix, one file per flush, named by time so readers can pick up what is new.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import os
import threading
import time
import uuid
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the route's annotations by name

import dsr_core as dsr
from dsr_core.adapters.types import jsonable

from .artifacts import filesystem, join, open_for_writing

# -- the production log ----------------------------------------------------------------------------------------


class ProductionLog:
    """Buffered, append-only JSONL part files: ``{url}/date=YYYY-MM-DD/part-{epoch ms}-{random}.jsonl``.

    Parts are never rewritten (S3 cannot append); the time in the name lets the drift monitor read only
    parts written since its last run. A background thread flushes every ``flush_seconds`` or
    ``flush_records``; ``close()`` flushes the rest.
    """

    def __init__(self, url: str, *, flush_seconds: float = 5.0, flush_records: int = 500) -> None:
        self.url = url
        self.flush_seconds = flush_seconds
        self.flush_records = flush_records
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="dsr-production-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(record)
            full = len(self._buffer) >= self.flush_records
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> str | None:
        with self._lock:
            records, self._buffer = self._buffer, []
        if not records:
            return None
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        part = join(self.url, f"date={day}", f"part-{int(now * 1000):013d}-{uuid.uuid4().hex[:8]}.jsonl")
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with open_for_writing(part) as handle:
            handle.write(text)
        return part

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


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


# -- the program being served ----------------------------------------------------------------------------------


def program_inputs(program: dsr.Module) -> tuple[list[str], list[str]]:
    """(required, optional) input field names: a Predict's signature inputs, or aforward/forward's parameters."""
    if isinstance(program, dsr.Predict):
        return list(program.signature.input_fields), []
    method = program.aforward if type(program).aforward is not dsr.Module.aforward else program.forward
    required: list[str] = []
    optional: list[str] = []
    for name, parameter in inspect.signature(method).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        (optional if parameter.default is not parameter.empty else required).append(name)
    return required, optional


class Served:
    """One loaded program version."""

    def __init__(self, program: dsr.Module, version: str | None) -> None:
        self.program = program
        self.version = version
        self.required, self.optional = program_inputs(program)


class ProgramService:
    """Loads ``source`` (a ``models:/`` URI, a path or an fsspec URL) and keeps it current.

    The registry is MLflow's tracking URI (MLFLOW_TRACKING_URI; ``dsr serve --tracking-uri`` sets it)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.current = self._load()

    def resolve_version(self) -> str | None:
        """The version a ``models:/name@alias`` or ``models:/name/version`` URI points at now."""
        if not self.source.startswith("models:/"):
            return None
        name, _, alias = self.source.removeprefix("models:/").partition("@")
        if alias:
            from mlflow.tracking import MlflowClient

            return str(MlflowClient().get_model_version_by_alias(name, alias).version)
        return name.rsplit("/", 1)[-1]

    def _load(self, version: str | None = None) -> Served:
        version = version or self.resolve_version()
        if version is None:
            return Served(dsr.load_program(self.source), None)
        name = self.source.removeprefix("models:/").partition("@")[0].split("/")[0]
        return Served(dsr.load_program(f"models:/{name}/{version}"), version)

    def refresh(self) -> bool:
        """Load the version the alias points at now, if it moved. True when a new version was swapped in."""
        version = self.resolve_version()
        if version is None or version == self.current.version:
            return False
        self.current = self._load(version)  # one assignment: requests hold the Served they started with
        return True


# -- the HTTP app ----------------------------------------------------------------------------------------------


def validate_inputs(body: Any, served: Served, max_chars: int) -> dict[str, Any]:
    """The request's input fields, or a ValueError naming what is wrong (becomes a 4xx)."""
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object of input fields ({', '.join(served.required)})")
    allowed = set(served.required) | set(served.optional)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; the program takes {sorted(allowed)}")
    missing = [name for name in served.required if name not in body]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    for name, value in body.items():
        size = len(value) if isinstance(value, str) else len(json.dumps(value))
        if size > max_chars:
            raise OverflowError(f"field {name!r} has {size} characters; the limit is {max_chars}")
    return body


def create_app(
    service: ProgramService,
    *,
    log: ProductionLog | None = None,
    token_env: str | None = None,
    refresh_seconds: float = 30.0,
    max_field_chars: int = 20_000,
) -> Any:
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    token = os.environ.get(token_env) if token_env else None
    if token_env and not token:
        raise dsr.DsrError(f"--token-env {token_env}: that environment variable is not set")

    async def watch() -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            try:
                if await asyncio.to_thread(service.refresh):
                    print(f"dsr serve: now serving {service.source} version {service.current.version}", flush=True)
            except Exception as exc:  # noqa: BLE001 - keep serving the loaded version; say why it did not move
                print(f"dsr serve: could not refresh {service.source}: {type(exc).__name__}: {exc}", flush=True)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        watcher = asyncio.create_task(watch()) if service.source.startswith("models:/") and refresh_seconds else None
        yield
        if watcher is not None:
            watcher.cancel()
        if log is not None:
            await asyncio.to_thread(log.close)

    app = FastAPI(title="dsr program", lifespan=lifespan)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        served = service.current
        return {
            "status": "ok",
            "source": service.source,
            "version": served.version,
            "program": type(served.program).__name__,
            "inputs": served.required + served.optional,
        }

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        if token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return error(401, "missing or wrong bearer token")
        served = service.current
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the body is not valid JSON")
        try:
            inputs = validate_inputs(body, served, max_field_chars)
        except OverflowError as exc:
            return error(413, str(exc))
        except ValueError as exc:
            return error(422, str(exc))
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        record: dict[str, Any] = {
            "ts": time.time(),
            "request_id": request_id,
            "source": service.source,
            "version": served.version,
            "inputs": jsonable(inputs),
        }
        try:
            prediction = await served.program.acall(**inputs)
        except Exception as exc:  # noqa: BLE001 - one failed request is a 502 with its reason, never a crash
            record.update(error=f"{type(exc).__name__}: {exc}"[:2000], latency=time.perf_counter() - started)
            if log is not None:
                log.append(record)
            return error(502, f"the program failed: {type(exc).__name__}")
        outputs = jsonable(prediction.to_dict())
        usage = prediction.usage.to_dict() if prediction.usage is not None else {}
        record.update(outputs=outputs, usage=usage, latency=time.perf_counter() - started)
        if log is not None:
            log.append(record)
        return {"outputs": outputs, "usage": usage, "version": served.version, "request_id": request_id}

    return app


def serve(
    source: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_url: str | None = None,
    token_env: str | None = None,
    refresh_seconds: float = 30.0,
    max_field_chars: int = 20_000,
) -> None:
    """Serve ``source`` with uvicorn until interrupted."""
    import uvicorn

    service = ProgramService(source)
    log = ProductionLog(log_url) if log_url else None
    app = create_app(
        service, log=log, token_env=token_env, refresh_seconds=refresh_seconds, max_field_chars=max_field_chars
    )
    print(f"dsr serve: {source} version {service.current.version} on http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
