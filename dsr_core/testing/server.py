"""An OpenAI-compatible chat-completions server for tests and benchmarks.

Real HTTP/1.1 on 127.0.0.1 (keep-alive, asyncio, no dependencies), driven through the real openai client.
Answers come from a ``responder`` (scripted or rule-based, see ``ChatRequest`` for what it can read),
after a configurable latency. Faults can be injected: 429 with Retry-After, 500, 400, 401, 403, 404, a
timeout (no answer), a connection closed or reset without an answer, a body that is not JSON, a truncated
body, a reply that does not follow the chat format, and a streamed reply that breaks off (``stream_cut``).
A ``"stream": true`` request is answered as OpenAI's server-sent events. Like a hosted endpoint it can require
an api key (``api_key=``: 401 otherwise) and know only some models (``models=``: 404 for any other). With
``enforce_max_tokens=True`` it stops a reply at the request's ``max_tokens`` (counted as the server counts
completion tokens, ``CHARS_PER_TOKEN`` characters each) with ``finish_reason`` "length", as a model does. It
counts requests, requests in flight and the most in flight at once.

``POST /embeddings`` answers in OpenAI's shape with ``embedding_vector``: a normalized bag of words, so texts
that share words are near (counted in ``requests`` and in ``embedding_requests``; bodies in ``embedding_bodies``).

OpenAI's fine-tuning API, enough for the openai SDK's ``files.create(purpose="fine-tune")`` (a multipart
upload; ``GET``/``DELETE /files/{id}`` too) and ``fine_tuning.jobs`` ``create``, ``retrieve``, ``cancel`` and
``list_events``. A job moves along ``JOB_PROGRESS`` (queued, running, succeeded), one step per retrieval, so a
client sees it progress over a few polls. It fails, with OpenAI's error object, when its training file is not
chat data (one ``{"messages": [...]}`` per line, ending with an assistant message) or when ``fail_jobs()``
asked for it. A succeeded job's ``fine_tuned_model`` (``ft:<model>:dsr-test::<job id>``) is served: a chat
request for it whose messages equal a training record's messages before its last one is answered with that
record's assistant message (counted in ``fine_tuned_answers``); any other request goes to the responder. The
uploads are kept in ``files`` (id -> ``UploadedFile``, its ``content`` the bytes received) and the jobs in
``jobs`` (id -> ``FineTuningJob``); counted in ``file_uploads``, ``fine_tuning_jobs``, ``fine_tuning_polls``
and ``fine_tuning_cancels`` (not in ``requests``; ``GET /stats`` reports them too). With ``api_key=`` these
routes want the key as well (401, echoing the key sent, as the chat route does).

In a test::

    with LMTestServer(responder) as server:
        lm = dsr.LM("test-model", api_base=server.url)

As a process (benchmarks): ``python -m dsr_core.testing.server --port 8711 --latency 0.1``, optionally
``--responder package.module:function`` (default: ``echo_responder``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import re
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_REQUIRED_OUTPUTS = re.compile(r"`\[\[ ## (\w+) ## \]\]`")
_XML_REQUEST = "Respond with the corresponding output fields wrapped in XML tags "
_XML_ELEMENT = re.compile(r"<(\w+)>\n(.*?)\n</\1>", re.DOTALL)
_FILES = re.compile(r"/files(?:/([^/]+))?$")
_JOBS = re.compile(r"/fine_tuning/jobs(?:/([^/]+)(?:/(cancel|events))?)?$")


@dataclass
class ChatRequest:
    """What a responder sees: the request body plus parsed views of a dsr/DSPy chat-format prompt."""

    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def model(self) -> str:
        return self.body.get("model", "")

    @property
    def system(self) -> str:
        return next((m["content"] for m in self.messages if m.get("role") == "system"), "")

    @property
    def last_user(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The request's ``tools`` (OpenAI function-calling descriptions), if any."""
        return self.body.get("tools") or []

    @property
    def json_mode(self) -> bool:
        return "response_format" in self.body

    @property
    def instructions(self) -> str:
        """The text after 'your objective is:' in the system message."""
        _, _, rest = self.system.partition("In adhering to this structure, your objective is:")
        return " ".join(rest.split())

    @property
    def xml_mode(self) -> bool:
        """Whether the prompt asks for XML elements (XMLAdapter)."""
        return _XML_REQUEST in self.last_user

    @property
    def inputs(self) -> dict[str, str]:
        """Input field values of the current request, parsed from ``[[ ## name ## ]]`` sections (or from
        ``<name>`` elements in an XML prompt)."""
        if self.xml_mode:
            request, _, _ = self.last_user.partition(_XML_REQUEST)
            return {name: value for name, value in _XML_ELEMENT.findall(request)}
        return parse_sections(self.last_user)

    @property
    def output_fields(self) -> list[str]:
        """Output field names the prompt asks for, in order."""
        if self.xml_mode:
            return re.findall(r"`<(\w+)>`", self.last_user.partition(_XML_REQUEST)[2].partition(".")[0])
        names = _REQUIRED_OUTPUTS.findall(self.last_user)
        if names:
            return [n for n in names if n != "completed"]
        match = re.search(r"Respond with a JSON object in the following order of fields: (.*)", self.last_user)
        if match:
            return re.findall(r"`(\w+)`", match.group(1))
        return ["answer"]

    @property
    def demos(self) -> list[tuple[dict[str, str], dict[str, str]]]:
        """(inputs, outputs) of each few-shot demo: the user/assistant pairs before the last user turn."""
        turns = [m for m in self.messages if m.get("role") in ("user", "assistant")][:-1]
        pairs = []
        for user, assistant in zip(turns[0::2], turns[1::2], strict=False):
            out_text = assistant["content"]
            try:
                outputs = json.loads(out_text)
                outputs = {k: str(v) for k, v in outputs.items()} if isinstance(outputs, dict) else {}
            except ValueError:
                outputs = parse_sections(out_text)
            pairs.append((parse_sections(user["content"]), outputs))
        return pairs

    def reply(self, **values: Any) -> str:
        """Format output values the way the prompt asked (chat sections, JSON in JSON mode, or XML elements
        for an XML prompt; values are written as given, unescaped, as a model may)."""
        if self.json_mode:
            return json.dumps(values)
        if self.xml_mode:
            text = (v if isinstance(v, str) else json.dumps(v) for v in values.values())
            return "\n\n".join(f"<{k}>\n{v}\n</{k}>" for k, v in zip(values, text, strict=True))
        parts = [f"[[ ## {k} ## ]]\n{v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items()]
        return "\n\n".join(parts) + "\n\n[[ ## completed ## ]]"


def tool_call(name: str, args: dict[str, Any], call_id: str = "call_0") -> dict[str, Any]:
    """One entry of an assistant message's ``tool_calls`` in OpenAI's shape (``arguments`` as a JSON string)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def parse_sections(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(("Respond with the corresponding output fields", "Respond with a JSON object")):
            break  # the output requirements that close the main request are not an input value
        match = _HEADER.match(line.strip())
        if match:
            if current is not None:
                sections[current] = "\n".join(lines).strip()
            current, lines = match.group(1), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines).strip()
    sections.pop("completed", None)
    return sections


EMBEDDING_DIMENSIONS = 64


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic embedding: each lower-cased word adds 1 at its crc32 modulo ``dimensions``, then the
    vector is scaled to unit length (all zeros for a text without words)."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(word.encode()) % dimensions] += 1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def echo_responder(request: ChatRequest) -> str:
    """Default rule: every output field gets the first input value (a deterministic, format-correct reply)."""
    inputs = request.inputs
    first = next(iter(inputs.values()), "")
    return request.reply(**{name: first for name in request.output_fields})


@dataclass
class Fault:
    """One injected failure. kind: one of ``FAULTS``.

    disconnect closes the connection without answering; reset aborts it (a TCP RST, ECONNRESET).
    """

    kind: str
    retry_after: float | None = None
    match: Callable[[ChatRequest], bool] | None = None
    message: str = "injected failure"


@dataclass
class ServerStats:
    requests: int = 0
    completions: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    faults_served: int = 0
    embedding_requests: int = 0
    bodies: deque = field(default_factory=lambda: deque(maxlen=100_000))
    embedding_bodies: deque = field(default_factory=lambda: deque(maxlen=100_000))
    last_headers: dict[str, str] = field(default_factory=dict)  # of the last chat request (names lower-cased)
    # the fine-tuning API: uploads, jobs created, job retrievals, cancellations, answers of a fine-tuned model
    file_uploads: int = 0
    fine_tuning_jobs: int = 0
    fine_tuning_polls: int = 0
    fine_tuning_cancels: int = 0
    fine_tuned_answers: int = 0


JOB_PROGRESS = ("queued", "running", "running", "succeeded")  # a job's status at its 1st, 2nd, ... retrieval
JOB_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
FINE_TUNED_OWNER = "dsr-test"  # the organization part of a fine-tuned model's name


@dataclass
class UploadedFile:
    """One ``POST /files`` upload."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class FineTuningJob:
    """One fine-tuning job. ``records``: the training file's chat records (None when it is not chat data,
    with ``problem`` saying why); ``failure``: the error message it is to fail with (``fail_jobs``)."""

    id: str
    model: str
    training_file: str
    hyperparameters: dict[str, Any]
    records: list[list[dict[str, Any]]] | None
    problem: str | None = None
    failure: str | None = None
    status: str = "queued"
    polls: int = 0
    error: dict[str, Any] | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))
    finished_at: int | None = None

    @property
    def fine_tuned_model(self) -> str | None:
        return f"ft:{self.model}:{FINE_TUNED_OWNER}::{self.id}" if self.status == "succeeded" else None

    def advance(self) -> None:
        """One retrieval's worth of progress: the next status of ``JOB_PROGRESS``, unless it is to fail."""
        if self.status in JOB_TERMINAL:
            return
        self.polls += 1
        status = JOB_PROGRESS[min(self.polls - 1, len(JOB_PROGRESS) - 1)]
        reason = self.problem or self.failure
        if status == "succeeded" and reason is not None:
            code = "invalid_training_file" if self.problem else "training_failed"
            self.error = {"code": code, "message": reason, "param": "training_file" if self.problem else None}
            status = "failed"
        self.status = status
        if status in JOB_TERMINAL:
            self.finished_at = int(time.time())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": self.created_at,
            "error": self.error,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "hyperparameters": self.hyperparameters,
            "model": self.model,
            "organization_id": f"org-{FINE_TUNED_OWNER}",
            "result_files": [],
            "seed": 0,
            "status": self.status,
            "trained_tokens": None,
            "training_file": self.training_file,
            "validation_file": None,
            "estimated_finish": None,
        }


def chat_records(content: bytes) -> tuple[list[list[dict[str, Any]]] | None, str | None]:
    """The message lists of a JSONL chat training file, or None and what is wrong with it (OpenAI's rule:
    every line a ``{"messages": [...]}`` of role/content messages ending with the assistant's)."""
    records = []
    for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return None, f"line {number} of the training file is not JSON"
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return None, f"line {number} of the training file has no 'messages' list"
        if messages[-1].get("role") != "assistant":
            return None, f"line {number} of the training file does not end with an assistant message"
        records.append(messages)
    if not records:
        return None, "the training file has no examples"
    return records, None


def multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a ``multipart/form-data`` body: name -> (filename, content)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.decode("latin-1")
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name is not None:
            fields[name.group(1)] = (filename.group(1) if filename else None, content.removesuffix(b"\r\n"))
    return fields


# a reply: its text, or an assistant message ({"content": ..., "tool_calls": [...]}); a list gives one per choice
Responder = Callable[[ChatRequest], "str | dict[str, Any] | list[str | dict[str, Any]]"]

_STATUS = {
    "400": "400 Bad Request",
    "401": "401 Unauthorized",
    "403": "403 Forbidden",
    "404": "404 Not Found",
    "500": "500 Internal Server Error",
}
DEFAULT_MODEL = "test-model"  # what GET /models lists when no models= are set (it answers any model anyway)
FAULTS = ("429", *_STATUS, "timeout", "disconnect", "reset", "garbage", "truncated", "unparseable", "stream_cut")
STREAM_PIECE = 4  # characters per content piece of a streamed answer
CHARS_PER_TOKEN = 4  # how the server counts tokens (usage) and where it cuts a reply at max_tokens


class LMTestServer:
    def __init__(
        self,
        responder: Responder = echo_responder,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record_bodies: bool = True,
        api_key: str | None = None,
        models: Collection[str] | None = None,
        enforce_max_tokens: bool = False,
    ) -> None:
        self.responder = responder
        self.enforce_max_tokens = enforce_max_tokens  # cut replies at max_tokens, finish_reason "length"
        self.api_key = api_key  # when set, a request without "Authorization: Bearer <api_key>" gets 401
        self.models = models  # when set, a request for any other model gets 404
        self.latency = latency
        self.host = host
        self.port = port
        self.record_bodies = record_bodies
        self.stats = ServerStats()
        self._faults: list[Fault] = []
        self._fault_lock = threading.Lock()
        self.files: dict[str, UploadedFile] = {}  # the fine-tuning API's uploads and jobs, by id
        self.jobs: dict[str, FineTuningJob] = {}
        self._job_failures: deque[str] = deque()  # messages the next jobs created fail with (fail_jobs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def inject(
        self,
        kind: str,
        times: int = 1,
        *,
        retry_after: float | None = None,
        match: Callable[[ChatRequest], bool] | None = None,
        message: str = "injected failure",
    ) -> None:
        """Serve ``kind`` to the next ``times`` requests (that ``match``, if given)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self._fault_lock:
            self._faults.extend(Fault(kind, retry_after, match, message) for _ in range(times))

    def fail_jobs(self, message: str = "injected training failure", times: int = 1) -> None:
        """The next ``times`` fine-tuning jobs created fail (once they would have succeeded) with ``message``."""
        self._job_failures.extend([message] * times)

    @property
    def fine_tuned_models(self) -> dict[str, FineTuningJob]:
        """The models of the succeeded jobs, by name."""
        return {job.fine_tuned_model: job for job in list(self.jobs.values()) if job.fine_tuned_model}

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._faults.clear()

    def reset_stats(self) -> None:
        self.stats = ServerStats()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self.stats.bodies)

    def start(self) -> LMTestServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port, backlog=4096)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="lm-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> LMTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ------------------------------------------------------------------------------------------------
    def _take_fault(self, request: ChatRequest) -> Fault | None:
        if not self._faults:
            return None
        with self._fault_lock:
            for i, fault in enumerate(self._faults):
                if fault.match is None or fault.match(request):
                    return self._faults.pop(i)
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                method, path, _ = request_line.split(" ", 2)
                keep = await self._route(method, path, headers, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the peer may be gone already
                pass

    @staticmethod
    def _send(
        writer: asyncio.StreamWriter,
        status: str,
        payload: bytes,
        extra: dict[str, str] | None = None,
        content_length: int | None = None,
    ) -> None:
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(payload) if content_length is None else content_length),
        }
        headers.update(extra or {})
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode() + payload)

    async def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
                self._send(writer, "401 Unauthorized", json.dumps({"error": {"message": "invalid api key"}}).encode())
                return True
            listed = sorted(self.models) if self.models is not None else [DEFAULT_MODEL]
            data = [{"id": name, "object": "model"} for name in listed]
            self._send(writer, "200 OK", json.dumps({"object": "list", "data": data}).encode())
            return True
        if method == "GET" and path.rstrip("/").endswith("/stats"):
            s = self.stats
            self._send(
                writer,
                "200 OK",
                json.dumps(
                    {
                        "requests": s.requests,
                        "completions": s.completions,
                        "in_flight": s.in_flight,
                        "max_in_flight": s.max_in_flight,
                        "faults_served": s.faults_served,
                        "embedding_requests": s.embedding_requests,
                        "file_uploads": s.file_uploads,
                        "fine_tuning_jobs": s.fine_tuning_jobs,
                        "fine_tuning_polls": s.fine_tuning_polls,
                        "fine_tuning_cancels": s.fine_tuning_cancels,
                        "fine_tuned_answers": s.fine_tuned_answers,
                    }
                ).encode(),
            )
            return True
        if method == "POST" and path.rstrip("/").endswith("/reset"):
            self.reset_stats()
            self._send(writer, "200 OK", b"{}")
            return True
        if method == "POST" and path.rstrip("/").endswith("/embeddings"):
            return await self._embed(body, headers, writer)
        route = path.partition("?")[0].rstrip("/")
        if _FILES.search(route) or _JOBS.search(route):
            return self._fine_tuning(method, route, headers, body, writer)
        if not (method == "POST" and path.rstrip("/").endswith("/chat/completions")):
            self._send(writer, "404 Not Found", b'{"error": {"message": "not found"}}')
            return True
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            return await self._complete(body, headers, writer, stats)
        finally:
            stats.in_flight -= 1

    async def _complete(
        self, raw: bytes, headers: dict[str, str], writer: asyncio.StreamWriter, stats: ServerStats
    ) -> bool:
        body = json.loads(raw)
        stats.last_headers = headers
        if self.record_bodies:
            stats.bodies.append(body)
        request = ChatRequest(body)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            # Echoes the key it was sent, as a careless endpoint might: clients must not pass it on.
            sent = headers.get("authorization", "").removeprefix("Bearer ")
            self._send_error(writer, "401 Unauthorized", f"Incorrect API key provided: {sent}", "invalid_api_key")
            return True
        fine_tuned = self.fine_tuned_models.get(request.model) if self.jobs else None
        if self.models is not None and request.model not in self.models and fine_tuned is None:
            message = f"The model `{request.model}` does not exist or you do not have access to it."
            self._send_error(writer, "404 Not Found", message, "model_not_found")
            return True
        fault = self._take_fault(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault is not None:
            stats.faults_served += 1
            return await self._serve_fault(fault, request, writer)
        try:
            answer = self._trained_answer(fine_tuned, request) if fine_tuned is not None else None
            answer = self.responder(request) if answer is None else answer
        except Exception as exc:  # noqa: BLE001 - a responder bug becomes a 500 the test can see
            self._send(writer, "500 Internal Server Error", json.dumps({"error": {"message": repr(exc)}}).encode())
            return True
        n = int(body.get("n") or 1)
        texts = answer if isinstance(answer, list) else [answer] * n
        finish_reasons = ["stop"] * len(texts)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if self.enforce_max_tokens and limit:
            chars = int(limit) * CHARS_PER_TOKEN
            finish_reasons = ["length" if isinstance(t, str) and len(t) > chars else "stop" for t in texts]
            texts = [t[:chars] if isinstance(t, str) else t for t in texts]
        finish_reasons = [
            "tool_calls" if isinstance(t, dict) and t.get("tool_calls") else reason
            for t, reason in zip(texts, finish_reasons, strict=True)
        ]
        stats.completions += 1
        if body.get("stream"):
            await self._send_stream(writer, request, texts, finish_reasons)
            return True
        self._send(writer, "200 OK", self._completion_body(request, texts, finish_reasons))
        return True

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        request: ChatRequest,
        texts: list[str | dict[str, Any]],
        finish_reasons: list[str],
        cut: bool = False,
    ) -> None:
        """A ``"stream": true`` request's answer, as OpenAI's server-sent events (chunked transfer encoding):
        ``choices[0].delta.content`` pieces of ``STREAM_PIECE`` characters (a tool call: its id and name, then
        its arguments in pieces, as ``delta.tool_calls``), the finish reason, a usage chunk
        when ``stream_options.include_usage``, then ``data: [DONE]``. ``cut``: the connection is closed
        after half of the pieces (a stream that breaks off)."""
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode())
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = request.model

        def event(data: dict[str, Any] | str) -> None:
            line = b"data: " + (data.encode() if isinstance(data, str) else json.dumps(data).encode()) + b"\n\n"
            writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")

        events: list[dict[str, Any]] = []
        for i, text in enumerate(texts):
            content = text if isinstance(text, str) else str(text.get("content") or "")
            events.append({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}}]})
            for start in range(0, len(content), STREAM_PIECE):
                piece = content[start : start + STREAM_PIECE]
                events.append({**base, "choices": [{"index": i, "delta": {"content": piece}, "finish_reason": None}]})
            for k, call in enumerate([] if isinstance(text, str) else text.get("tool_calls") or []):
                # the id and name first, then the JSON arguments in pieces, as OpenAI streams a tool call
                head = {
                    "index": k,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"]},
                }
                events.append({**base, "choices": [{"index": i, "delta": {"tool_calls": [head]}}]})
                arguments = call["function"]["arguments"]
                for start in range(0, len(arguments), STREAM_PIECE):
                    piece = {"index": k, "function": {"arguments": arguments[start : start + STREAM_PIECE]}}
                    events.append({**base, "choices": [{"index": i, "delta": {"tool_calls": [piece]}}]})
            events.append({**base, "choices": [{"index": i, "delta": {}, "finish_reason": finish_reasons[i]}]})
        for number, data in enumerate(events):
            if cut and number >= len(events) // 2:
                await writer.drain()
                writer.transport.abort()
                return
            event(data)
            await writer.drain()
            await asyncio.sleep(0)  # the pieces go out one by one, as a model writes them
        if (request.body.get("stream_options") or {}).get("include_usage"):
            usage = json.loads(self._completion_body(request, texts, finish_reasons))["usage"]
            event({**base, "choices": [], "usage": usage})
        event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _embed(self, raw: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        """An embeddings request: one ``embedding_vector`` per input, as floats or (``encoding_format`` base64)
        little-endian float32 bytes, which is what the openai SDK asks for by default."""
        stats = self.stats
        stats.requests += 1
        stats.embedding_requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            body = json.loads(raw)
            if self.record_bodies:
                stats.embedding_bodies.append(body)
            if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
                self._send_error(writer, "401 Unauthorized", "Incorrect API key provided", "invalid_api_key")
                return True
            if self.latency:
                await asyncio.sleep(self.latency)
            texts = [body["input"]] if isinstance(body.get("input"), str) else list(body.get("input") or [])
            size = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
            vectors = [embedding_vector(str(text), size) for text in texts]
            if body.get("encoding_format") == "base64":
                encoded: list[Any] = [base64.b64encode(struct.pack(f"<{size}f", *v)).decode() for v in vectors]
            else:
                encoded = vectors
            tokens = sum(len(str(text)) for text in texts) // CHARS_PER_TOKEN + 1
            data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)]
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            payload = {"object": "list", "data": data, "model": body.get("model", ""), "usage": usage}
            self._send(writer, "200 OK", json.dumps(payload).encode())
            return True
        finally:
            stats.in_flight -= 1

    def _trained_answer(self, job: FineTuningJob, request: ChatRequest) -> str | None:
        """What a fine-tuned model learned for these messages: the assistant message of the training record
        whose earlier messages are exactly the request's, else None (the responder answers)."""
        asked = [{"role": m.get("role"), "content": m.get("content")} for m in request.messages]
        for messages in job.records or []:
            if [{"role": m.get("role"), "content": m.get("content")} for m in messages[:-1]] == asked:
                self.stats.fine_tuned_answers += 1
                return str(messages[-1].get("content", ""))
        return None

    # -- fine-tuning API ---------------------------------------------------------------------------------------
    def _fine_tuning(
        self, method: str, route: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """``/files`` and ``/fine_tuning/jobs`` (``route``: the path without its query), as OpenAI answers them."""
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            sent = headers.get("authorization", "").removeprefix("Bearer ")  # echoed, as on the chat route
            self._send_error(writer, "401 Unauthorized", f"Incorrect API key provided: {sent}", "invalid_api_key")
            return True
        files, jobs = _FILES.search(route), _JOBS.search(route)
        if files is not None:
            self._file_route(method, files.group(1), headers, body, writer)
        elif jobs is not None:
            self._job_route(method, jobs.group(1), jobs.group(2), body, writer)
        return True

    def _file_route(
        self, method: str, file_id: str | None, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if method == "POST" and file_id is None:
            parts = multipart_fields(headers.get("content-type", ""), body)
            if "file" not in parts:
                self._send_error(writer, "400 Bad Request", "a multipart 'file' part is required", "invalid_file")
                return
            filename, content = parts["file"]
            purpose = parts.get("purpose", (None, b""))[1].decode()
            upload = UploadedFile(f"file-{len(self.files) + 1}", filename or "file", purpose, content)
            self.files[upload.id] = upload
            self.stats.file_uploads += 1
            self._send(writer, "200 OK", json.dumps(upload.to_json()).encode())
            return
        found = self.files.get(file_id or "")
        if found is None:
            self._send_error(writer, "404 Not Found", f"No such File object: {file_id}", "file_not_found")
        elif method == "DELETE":
            del self.files[found.id]
            self._send(writer, "200 OK", json.dumps({"id": found.id, "object": "file", "deleted": True}).encode())
        else:
            self._send(writer, "200 OK", json.dumps(found.to_json()).encode())

    def _job_route(
        self, method: str, job_id: str | None, action: str | None, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if method == "POST" and job_id is None:
            self._create_job(json.loads(body or b"{}"), writer)
            return
        job = self.jobs.get(job_id or "")
        if job is None:
            message = f"Could not find fine tune job: {job_id}"
            self._send_error(writer, "404 Not Found", message, "fine_tune_job_not_found")
        elif action == "cancel":
            self._cancel_job(job, writer)
        elif action == "events":
            event = {"id": f"ftevent-{job.id}-{job.polls}", "object": "fine_tuning.job.event", "level": "info"}
            event.update({"created_at": int(time.time()), "message": f"Job {job.status}", "type": "message"})
            self._send(writer, "200 OK", json.dumps({"object": "list", "data": [event], "has_more": False}).encode())
        else:
            self.stats.fine_tuning_polls += 1
            job.advance()
            self._send(writer, "200 OK", json.dumps(job.to_json()).encode())

    def _create_job(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        upload = self.files.get(str(request.get("training_file")))
        if upload is None:
            message = f"invalid training_file: {request.get('training_file')}"
            self._send_error(writer, "400 Bad Request", message, "invalid_training_file")
            return
        records, problem = chat_records(upload.content)
        job = FineTuningJob(
            id=f"ftjob-{len(self.jobs) + 1}",
            model=str(request.get("model", "")),
            training_file=upload.id,
            hyperparameters=dict(request.get("hyperparameters") or {}),
            records=records,
            problem=problem,
            failure=self._job_failures.popleft() if self._job_failures else None,
        )
        self.jobs[job.id] = job
        self.stats.fine_tuning_jobs += 1
        self._send(writer, "200 OK", json.dumps(job.to_json()).encode())

    def _cancel_job(self, job: FineTuningJob, writer: asyncio.StreamWriter) -> None:
        if job.status in JOB_TERMINAL:
            message = f"Job {job.id} is already {job.status}: it cannot be cancelled"
            self._send_error(writer, "400 Bad Request", message, "invalid_request")
            return
        job.status = "cancelled"
        job.finished_at = int(time.time())
        self.stats.fine_tuning_cancels += 1
        self._send(writer, "200 OK", json.dumps(job.to_json()).encode())

    async def _serve_fault(self, fault: Fault, request: ChatRequest, writer: asyncio.StreamWriter) -> bool:
        if fault.kind == "429":
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            self._send(
                writer,
                "429 Too Many Requests",
                b'{"error": {"message": "rate limited", "type": "rate_limit_error"}}',
                extra,
            )
        elif fault.kind in _STATUS:
            self._send(writer, _STATUS[fault.kind], json.dumps({"error": {"message": fault.message}}).encode())
        elif fault.kind == "timeout":
            await asyncio.sleep(3600)
        elif fault.kind == "disconnect":
            return False  # _handle closes the connection: no status line, no body
        elif fault.kind == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            writer.transport.abort()
            return False
        elif fault.kind == "garbage":
            self._send(writer, "200 OK", b"<html>this is not json</html>")
        elif fault.kind == "truncated":
            payload = self._completion_body(request, ["[[ ## answer ## ]]\ncut"])
            self._send(writer, "200 OK", payload[: len(payload) // 2], content_length=len(payload))
            await writer.drain()
            return False  # close the connection mid-body
        elif fault.kind == "stream_cut":  # a streamed answer that breaks off half way (a plain one: no answer)
            if not request.body.get("stream"):
                return False
            texts = [self.responder(request)]
            await self._send_stream(writer, request, texts, ["stop"], cut=True)  # type: ignore[arg-type]
            return False
        elif fault.kind == "unparseable":
            self._send(writer, "200 OK", self._completion_body(request, ["I'd rather not follow any format."]))
        return True

    @classmethod
    def _send_error(cls, writer: asyncio.StreamWriter, status: str, message: str, code: str) -> None:
        """An error body in OpenAI's shape."""
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        cls._send(writer, status, json.dumps({"error": error}).encode())

    @staticmethod
    def _completion_body(
        request: ChatRequest, texts: list[str | dict[str, Any]], finish_reasons: list[str] | None = None
    ) -> bytes:
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in request.messages) // CHARS_PER_TOKEN + 1
        completion_tokens = sum(len(t if isinstance(t, str) else json.dumps(t)) for t in texts) // CHARS_PER_TOKEN + 1
        finish_reasons = finish_reasons or ["stop"] * len(texts)
        return json.dumps(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.model,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", **(t if isinstance(t, dict) else {"content": t})},
                        "finish_reason": reason,
                    }
                    for i, (t, reason) in enumerate(zip(texts, finish_reasons, strict=True))
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible test server (echo responder)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--responder", default=None, help="'package.module:function' taking a ChatRequest (default: echo)"
    )
    args = parser.parse_args()
    responder: Responder = echo_responder
    if args.responder:
        import importlib

        module_name, _, attr = args.responder.partition(":")
        responder = getattr(importlib.import_module(module_name), attr)
    server = LMTestServer(responder, latency=args.latency, host=args.host, port=args.port, record_bodies=False).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
