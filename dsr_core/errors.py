"""One exception hierarchy for dsr_core.

Every error says what was wrong and, where it can, where (signature column, file/row/column, field).
"""

from __future__ import annotations

from typing import Any


class DsrError(Exception):
    """Base class of every error raised by dsr."""


class SignatureError(DsrError, ValueError):
    """A signature string or class is malformed."""


class AdapterParseError(DsrError):
    """An LM reply could not be parsed into the signature's output fields.

    ``raw`` holds the reply text, ``field`` the first field that failed (None if the reply had no
    recognizable structure at all). DSPy's constructor works too, ``AdapterParseError(adapter_name,
    signature, lm_response, message=None, parsed_result=None)``, with DSPy's message and attributes.
    """

    def __init__(
        self,
        message: str | None = None,
        signature: Any = None,
        lm_response: str | None = None,
        dspy_message: str | None = None,
        parsed_result: Any = None,
        *,
        raw: str | None = None,
        field: str | None = None,
        adapter: str = "",
        adapter_name: str | None = None,
    ) -> None:
        if signature is not None or adapter_name is not None:  # DSPy's form: the first argument names the adapter
            if adapter_name is not None:  # by keyword: then ``message=`` is DSPy's extra context
                dspy_message = dspy_message or message
            adapter = adapter_name or message or adapter
            raw = lm_response if raw is None else raw
            message = _dspy_parse_message(adapter, signature, raw, dspy_message, parsed_result)
        super().__init__(message)
        self.raw = raw if raw is not None else ""
        self.field = field
        self.adapter = adapter
        self.adapter_name, self.signature, self.lm_response = adapter, signature, self.raw  # DSPy's names
        self.parsed_result = parsed_result


class LMError(DsrError):
    """A call to the LM endpoint failed after retries (or was not retryable)."""

    def __init__(self, message: str, *, status_code: int | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.model = model


class LMConfigError(DsrError, ValueError):
    """An LM that cannot be made as given: an unknown or unsupported provider, or a missing ``api_base``."""


class LMRateLimitError(LMError):
    """The endpoint kept answering 429 until the retries ran out."""


class LMTimeoutError(LMError):
    """The endpoint did not answer within the timeout, on every attempt."""


class LMConnectionError(LMError):
    """The endpoint could not be reached, on every attempt.

    Connection refused, host name not resolved, connection reset or closed without an answer. Retried first
    (the server may be restarting); the message names the base URL and what happened.
    """


class LMAuthenticationError(LMError):
    """The endpoint rejected the API key (401) or denied it the request (403), or there is no key to send.

    Not retried: the same key fails again. The message names the variable the key comes from (``api_key_env``),
    never the key.
    """


class LMNotFoundError(LMError):
    """The endpoint answered 404: no such model, or ``api_base`` is not the API root. Not retried."""


class ContextWindowExceededError(LMError):
    """The request is longer than the model's context window; retrying cannot help."""


class DataError(DsrError, ValueError):
    """A data file or row is malformed. The message names the file, the row and the column."""

    def __init__(
        self, message: str, *, path: str | None = None, row: int | None = None, column: str | None = None
    ) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = path
        self.row = row
        self.column = column


class ProgramStateError(DsrError, ValueError):
    """Saved program state does not fit the program it is loaded into, or is not valid state."""


def _dspy_parse_message(adapter: str, signature: Any, response: Any, message: str | None, parsed: Any) -> str:
    """DSPy's wording of a parse failure, for an error built with DSPy's constructor."""
    expected = ", ".join(getattr(signature, "output_fields", {}) or {})
    text = (f"{message}\n\n" if message else "") + (
        f"Adapter {adapter} failed to parse the LM response. \n\n"
        f"LM Response: {response} \n\n"
        f"Expected to find output fields in the LM response: [{expected}] \n\n"
    )
    if parsed is not None:
        text += f"Actual output fields parsed from the LM response: [{', '.join(parsed)}] \n\n"
    return text
