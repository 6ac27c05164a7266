"""What went wrong, as a typed dsr error: an SDK or transport exception read into ``LMConnectionError``,
``LMTimeoutError``, ``LMAuthenticationError``, ``LMNotFoundError``, ``ContextWindowExceededError``,
``LMRateLimitError`` or ``LMError``, with a message that names the endpoint and never the key (every text
from the server passes through ``redact``)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import (
    ContextWindowExceededError,
    LMAuthenticationError,
    LMConnectionError,
    LMError,
    LMNotFoundError,
    LMRateLimitError,
    LMTimeoutError,
)

Redact = Callable[[str], str]

CONTEXT_WINDOW_MARKERS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
)
_RESETS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def fatal_error(exc: Exception, *, model: str, url: str, key_source: Callable[[], str], redact: Redact) -> LMError:
    """The typed error for a status that retrying cannot fix; ``key_source`` says where the key came from."""
    status = getattr(exc, "status_code", None)
    message = redact(describe(exc))
    if status == 400 and any(m in message.lower() for m in CONTEXT_WINDOW_MARKERS):
        return ContextWindowExceededError(
            f"{model}: request exceeds the context window: {message}", status_code=status, model=model
        )
    if status in (401, 403):
        said = redact(server_message(exc))
        what = "rejected the API key" if status == 401 else "denied the request"
        return LMAuthenticationError(
            f"{model}: {url} {what} ({status}); {key_source()}: {said}", status_code=status, model=model
        )
    if status == 404:
        said = redact(server_message(exc))
        return LMNotFoundError(
            f"{model}: {url} answered 404 ({said}); check the model name and that "
            "api_base is the API root (usually ending in /v1)",
            status_code=status,
            model=model,
        )
    return LMError(f"{model}: {message}", status_code=status, model=model)


def exhausted_error(
    exc: Exception | None, *, model: str, url: str, tries: int, timeout: float, redact: Redact
) -> LMError:
    """The typed error once ``tries`` attempts all failed, the last with ``exc``."""
    import openai

    message = redact(describe(exc))
    if isinstance(exc, openai.RateLimitError):
        return LMRateLimitError(
            f"{model}: still rate limited after {tries} attempts: {message}", status_code=429, model=model
        )
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
        timed_out = f"no answer within {timeout}s on {tries} attempts"
        return connection_error(
            exc, model=model, url=url, attempts=f"{tries} attempts", timed_out=timed_out, redact=redact
        )
    status = getattr(exc, "status_code", None)
    return LMError(f"{model}: failed after {tries} attempts: {message}", status_code=status, model=model)


def connection_error(exc: Exception, *, model: str, url: str, attempts: str, timed_out: str, redact: Redact) -> LMError:
    """LMConnectionError, or LMTimeoutError when the request really timed out.

    The SDK's class is not evidence: its aiohttp transport reports every aiohttp connection error, a
    refused connection included, as a connect timeout. The exception's causes say what happened.
    """
    import openai

    problem = connection_problem(exc, url)
    if problem is None and isinstance(exc, openai.APITimeoutError):
        return LMTimeoutError(f"{model}: {url}: {timed_out}", model=model)
    if problem is None:
        cause = " ".join(describe(root_cause(exc)).split())  # one line (aiohttp's messages span several)
        problem = f"connection to {url} failed: {redact(cause)}"
    return LMConnectionError(f"{model}: {problem} ({attempts})", model=model)


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    return f"{exc.__class__.__name__}: {exc}"


def server_message(exc: Exception) -> str:
    """The message in an OpenAI-style error body, else the SDK's description."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str) and message:
            return message
    return describe(exc)


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (members of exception groups included)."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending and len(seen) < 32:
        link = pending.pop(0)
        if any(link is s for s in seen):
            continue
        seen.append(link)
        if isinstance(link, BaseExceptionGroup):
            pending.extend(link.exceptions)
        cause = link.__cause__ or link.__context__
        if cause is not None:
            pending.append(cause)
    return seen


def root_cause(exc: BaseException) -> BaseException:
    return causes(exc)[-1]


def connection_problem(exc: BaseException, url: str) -> str | None:
    """What went wrong on the wire, read from the causes of a transport error; None for a timeout or if unclear."""
    for link in causes(exc):
        if isinstance(link, TimeoutError):
            return None  # a real timeout: aiohttp's and anyio's timeouts are TimeoutErrors
        code = getattr(link, "errno", None)
        if isinstance(link, ConnectionRefusedError) or code == errno.ECONNREFUSED:
            return f"cannot connect to {url}: connection refused"
        if isinstance(link, socket.gaierror):
            return f"cannot connect to {url}: host name {urlsplit(url).hostname!r} not resolved"
        if isinstance(link, _RESETS) or code == errno.ECONNRESET:
            return f"connection to {url} reset by the server"
        if type(link).__name__ == "ServerDisconnectedError" or str(link).startswith("Server disconnected"):
            return f"{url} closed the connection without answering"  # aiohttp's class; httpcore's wording
    return None
