"""The retry policy: which failures another attempt may fix, and how long to wait before it.

Retried: rate limits (429), timeouts, connection failures, 5xx, 408 and 409, and a 200 whose body is not a
chat completion. The wait is exponential backoff with jitter, ``min(ceiling, initial * 2**attempt)`` times
a random factor in [0.5, 1], and never shorter than the server's Retry-After (capped at ``MAX_RETRY_AFTER``).
"""

from __future__ import annotations

import random
import time
from typing import Any

from .response import MalformedResponseError

MAX_RETRY_AFTER = 120.0  # seconds
RETRIED_STATUSES = frozenset({408, 409})  # besides every 5xx and 429


def is_transient(exc: Exception) -> bool:
    """Whether another attempt may succeed (an SDK error or a malformed body); False means fatal."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500 or exc.status_code in RETRIED_STATUSES
    return isinstance(exc, (openai.APIConnectionError, MalformedResponseError))


def server_delay(exc: Exception) -> float | None:
    """The Retry-After of a failed request's answer, in seconds; None when there is none."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return retry_after(exc.response)
    return None


def backoff_delay(attempt: int, backoff: tuple[float, float], retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
    initial, ceiling = backoff
    delay = min(ceiling, initial * 2**attempt) * random.uniform(0.5, 1.0)
    if retry_after is not None:  # the server knows best; only absurd values are cut
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def retry_after(response: Any) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date) of a response, in seconds."""
    if response is None:
        return None
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
