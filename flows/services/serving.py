"""``dsr serve``: a registered program over HTTP, with a production log for monitoring.

- ``POST /predict`` takes a JSON object of the program's input fields and returns its output fields, the
  LM usage behind them, the model version that answered and a request id. Inputs are checked against the
  program before any LM call, each refusal with a message naming the field:
  missing or unknown fields and a non-object body are a 422; a value that does not match the field's declared
  type is a 422 (a ``str`` field takes only a JSON string: ``null``, numbers, arrays and objects are refused;
  typed fields are validated by pydantic against their annotation; a field whose default is ``None`` may be
  ``null``); text holding a lone surrogate (``"\\ud800"``, not valid Unicode) is a 422; a field longer than
  ``max_field_chars`` is a 413; a body that is not UTF-8 JSON, or that nests arrays/objects more than
  ``MAX_JSON_DEPTH`` levels, is a 400 (the depth is checked before parsing, so nothing recurses per level).
  A failed program call, or an output that cannot be returned as JSON, is a 502 with the error type.
- ``GET /health`` says which program and version are being served.
- Request header fields of more than ``MAX_HEADER_BYTES`` in all get a 431 (RFC 6585), from the app when the
  request head arrived whole, from the HTTP protocol (``HeadLimitH11Protocol``) when it is still arriving.
- Requests run concurrently on the server's event loop through the async LM (its client-side limits apply).
- ``models:/name@alias`` is re-resolved every ``refresh_seconds``: when the alias moves (a new champion),
  the new version is loaded and swapped in without a restart; requests in flight finish on the old one.
- With a bearer token configured (the NAME of an environment variable holding it), every route but
  ``/health`` needs ``Authorization: Bearer <token>``, ``/openapi.json`` included. There is no ``/docs`` or
  ``/redoc`` UI (it would load its scripts from a CDN); the schema at ``/openapi.json`` is for tools. The token
  and API keys never appear in responses, logs or the production log.
- Every request/response is appended to the production log (``ProductionLog``, in ``production_log``).
- The body-depth and header limits, and the JSON response that carries any text, are in ``http_limits``.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import time
import typing
import uuid
from typing import Any

import pydantic
from fastapi import Request  # at module level: FastAPI resolves the route's annotations by name

import dsr_core as dsr
from dsr_core.adapters.types import jsonable, type_adapter
from dsr_core.environment import secret
from dsr_core.primitives import Usage
from dsr_core.signatures import SignatureMeta, type_name
from dsr_core.tracking import current_usage

from .http_limits import (
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    HeaderLimit,
    Rejected,
    SafeJSONResponse,
    error,
    parse_json_body,
    server_options,
    value_too_deep,
)
from .production_log import ProductionLog

# -- the program being served ----------------------------------------------------------------------------------


def json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


class InputSpec:
    """One input field of the served program and its declared type (``Any``: nothing declares one).

    ``none_default``: the parameter defaults to ``None``, so ``null`` means "not given" whatever the type."""

    def __init__(self, name: str, annotation: Any = Any, *, required: bool = True, none_default: bool = False):
        self.name = name
        self.annotation = annotation
        self.required = required
        self.none_default = none_default
        self.adapter = self._adapter(annotation)

    @staticmethod
    def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any] | None:
        if annotation is Any:
            return None
        try:
            return type_adapter(annotation)
        except Exception:  # noqa: BLE001 - a type pydantic cannot validate is passed through unchecked
            return None

    def check(self, value: Any) -> Any:
        """``value`` validated as the declared type (pydantic, lax as for JSON), or a 422 naming field and type."""
        if self.adapter is None or (value is None and self.none_default):
            return value
        try:
            return self.adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            detail = f" ({where}: {first['msg']})" if where else ""
            message = f"field {self.name!r} must be {type_name(self.annotation)}, got {json_kind(value)}{detail}"
            raise Rejected(422, message) from None


def _method(program: dsr.Module) -> Any:
    return program.aforward if type(program).aforward is not dsr.Module.aforward else program.forward


def _type_hints(function: Any) -> dict[str, Any]:
    """A function's resolved annotations; none when they cannot be resolved (then nothing is checked)."""
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - an unresolvable annotation declares nothing we can check
        return {}


def predictor_input_types(program: dsr.Module) -> dict[str, Any]:
    """Input field name -> annotation over the program's predictors' signatures, where they agree."""
    found: dict[str, list[Any]] = {}
    for predictor in program.predictors():
        for name, field in predictor.signature.input_fields.items():
            found.setdefault(name, []).append(field.annotation)
    return {name: types[0] for name, types in found.items() if all(t == types[0] for t in types)}


def input_specs(program: dsr.Module) -> dict[str, InputSpec]:
    """The served program's input fields with their declared types.

    A predictor (Predict, ChainOfThought: a call that takes only ``**kwargs``, and a ``signature``) takes its
    signature's input fields. Any other program takes its aforward/forward parameters, typed by their
    annotations or, when unannotated, by the same-named input field of its predictors' signatures (where they
    agree; DSPy's default type is ``str``). A parameter with a default may be omitted."""
    method = _method(program)
    parameters = [
        p for p in inspect.signature(method).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    signature = getattr(program, "signature", None)
    if not parameters and isinstance(signature, SignatureMeta):
        return {name: InputSpec(name, field.annotation) for name, field in signature.input_fields.items()}
    hints = _type_hints(method)
    declared = predictor_input_types(program)
    return {
        p.name: InputSpec(
            p.name,
            hints.get(p.name, declared.get(p.name, Any)),
            required=p.default is p.empty,
            none_default=p.default is None,
        )
        for p in parameters
    }


def program_inputs(program: dsr.Module) -> tuple[list[str], list[str]]:
    """(required, optional) input field names."""
    specs = input_specs(program).values()
    return [s.name for s in specs if s.required], [s.name for s in specs if not s.required]


class Served:
    """One loaded program version."""

    def __init__(self, program: dsr.Module, version: str | None) -> None:
        self.program = program
        self.version = version
        self.inputs = input_specs(program)
        self.required = [s.name for s in self.inputs.values() if s.required]
        self.optional = [s.name for s in self.inputs.values() if not s.required]


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


# -- request bodies and responses ------------------------------------------------------------------------------


def check_field(spec: InputSpec, value: Any, max_chars: int) -> Any:
    """One input value: its size, that it is valid text, then its type."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > max_chars:
        raise Rejected(413, f"field {spec.name!r} has {len(text)} characters; the limit is {max_chars}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected(
            422, f"field {spec.name!r} is not valid text: it holds a lone surrogate (an unpaired \\ud800-\\udfff)"
        ) from None
    return spec.check(value)


def validate_inputs(body: Any, served: Served, max_chars: int) -> dict[str, Any]:
    """The request's input fields as their declared types, or Rejected naming what is wrong (a 4xx)."""
    if not isinstance(body, dict):
        raise Rejected(422, f"the body must be a JSON object of input fields ({', '.join(served.required)})")
    allowed = set(served.inputs)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Rejected(422, f"unknown field(s) {unknown}; the program takes {sorted(allowed)}")
    missing = [name for name in served.required if name not in body]
    if missing:
        raise Rejected(422, f"missing field(s) {missing}")
    return {name: check_field(served.inputs[name], value, max_chars) for name, value in body.items()}


class UnreturnableOutput(Exception):
    """The program answered, but with something that cannot be sent back as JSON."""


def output_values(prediction: Any) -> dict[str, Any]:
    """The prediction's fields as JSON values. Depth-checked first: ``jsonable`` and the JSON encoder recurse
    once per level."""
    fields = prediction.to_dict()
    if value_too_deep(fields, MAX_JSON_DEPTH):
        raise UnreturnableOutput(f"the program's output nests more than {MAX_JSON_DEPTH} levels deep")
    return jsonable(fields)


# -- the HTTP app ----------------------------------------------------------------------------------------------


def create_app(
    service: ProgramService,
    *,
    log: ProductionLog | None = None,
    token_env: str | None = None,
    refresh_seconds: float = 30.0,
    max_field_chars: int = 20_000,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> Any:
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    token = secret(token_env)
    if token_env and token is None:
        raise dsr.DsrError(f"--token-env {token_env}: that environment variable is not set")
    expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else b""

    def authorized(request: Request) -> bool:
        return token is None or hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)

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

    app = FastAPI(
        title="dsr program",
        lifespan=lifespan,
        docs_url=None,  # the docs UIs load their scripts from a CDN
        redoc_url=None,
        openapi_url=None,  # served below, behind the token
        default_response_class=SafeJSONResponse,
    )
    app.add_middleware(HeaderLimit, max_bytes=max_header_bytes)

    def append(record: dict[str, Any]) -> None:
        if log is not None:
            log.append(record)

    async def run(served: Served, inputs: dict[str, Any]) -> SafeJSONResponse:
        """Call the program and log the request; a failure to answer (or to return the answer) is a 502."""
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
            spent = Usage()  # every LM call the request made, as the evaluate flow counts an example's
            token = current_usage.set(spent)
            try:
                prediction = await served.program.acall(**inputs)
            finally:
                current_usage.reset(token)
            if not spent.lm_calls and prediction.usage is not None:
                spent = prediction.usage  # a program that made no tracked call may report its own usage
            outputs = output_values(prediction)
            usage = spent.to_dict()
            body = {"outputs": outputs, "usage": usage, "version": served.version, "request_id": request_id}
            response = SafeJSONResponse(body)  # rendered here, so an output JSON cannot hold is a 502 too
        except Exception as exc:  # noqa: BLE001 - one failed request is a 502 with its reason, never a crash
            record.update(error=f"{type(exc).__name__}: {exc}"[:2000], latency=time.perf_counter() - started)
            append(record)
            reason = str(exc) if isinstance(exc, UnreturnableOutput) else f"the program failed: {type(exc).__name__}"
            return error(502, reason)
        record.update(outputs=outputs, usage=usage, latency=time.perf_counter() - started)
        append(record)
        return response

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

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Any:
        if not authorized(request):
            return error(401, "missing or wrong bearer token")
        return SafeJSONResponse(app.openapi())

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        if not authorized(request):
            return error(401, "missing or wrong bearer token")
        served = service.current
        try:
            inputs = validate_inputs(parse_json_body(await request.body()), served, max_field_chars)
        except Rejected as exc:
            return error(exc.status, exc.message)
        return await run(served, inputs)

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
    uvicorn.run(app, host=host, port=port, log_level="warning", **server_options())
