"""File: a document file as an input field, sent as an OpenAI ``file`` content part (DSPy's ``dspy.File``).

It carries ``file_data`` (a ``data:<mime>;base64,...`` URI), or ``file_id`` (a file uploaded to the provider),
and optionally ``filename``. Built from bytes, a data URI, a dict of those keys or another ``File``;
``File.from_path`` reads a local file, ``File.from_bytes`` and ``File.from_file_id`` name their source.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from typing import Any

import pydantic

from .custom_types import Type

_KEYS = ("file_data", "file_id", "filename")


def _data_uri(data: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def encode_file_to_dict(file_input: Any) -> dict[str, Any]:
    """The ``file_data`` / ``file_id`` / ``filename`` keys for bytes, a data URI, a dict or a ``File``."""
    if isinstance(file_input, File):
        return {key: getattr(file_input, key) for key in _KEYS if getattr(file_input, key) is not None}
    if isinstance(file_input, dict):
        if any(key in file_input for key in _KEYS):
            return file_input
        raise ValueError("Value of `dspy.File` must contain at least one of: file_data, file_id, or filename")
    if isinstance(file_input, str):
        if file_input.startswith("data:"):
            return {"file_data": file_input}
        raise ValueError(
            f"String file inputs must be data URIs, received: {file_input}. Load local files with File.from_path()."
        )
    if isinstance(file_input, bytes):
        return {"file_data": _data_uri(file_input, "application/octet-stream")}
    raise ValueError(f"Unsupported file input type: {type(file_input)}")


class File(Type):
    """``dsr.File.from_path("report.pdf")``, ``dsr.File(pdf_bytes)``, ``dsr.File.from_file_id("file-abc")``."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    model_config = pydantic.ConfigDict(
        defer_build=True, frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )

    def __init__(self, *args: Any, **data: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"File expected at most 1 positional argument, received {len(args)}")
        if args:
            given = encode_file_to_dict(args[0])
            overlap = sorted(set(given) & set(data))
            if overlap:
                raise TypeError(
                    f"File received {', '.join(overlap)} from both the positional source and keyword arguments"
                )
            data = {**given, **data}
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _normalize(cls, values: Any) -> Any:
        if isinstance(values, cls):
            return {key: getattr(values, key) for key in _KEYS}
        return encode_file_to_dict(values)

    def format(self) -> list[dict[str, Any]]:
        return [{"type": "file", "file": {key: getattr(self, key) for key in _KEYS if getattr(self, key)}}]

    @classmethod
    def from_path(cls, file_path: str, filename: str | None = None, mime_type: str | None = None) -> File:
        """A local file as a data URI; ``filename`` defaults to its base name, ``mime_type`` to its extension's."""
        if not os.path.isfile(file_path):
            raise ValueError(f"File not found: {file_path}")
        with open(file_path, "rb") as handle:
            body = handle.read()
        if filename is None:
            filename = os.path.basename(file_path)
        if mime_type is None:
            mime_type = mimetypes.guess_type(file_path)[0] or "application/octet-stream"
        return cls(file_data=_data_uri(body, mime_type), filename=filename)

    @classmethod
    def from_bytes(
        cls, file_bytes: bytes, filename: str | None = None, mime_type: str = "application/octet-stream"
    ) -> File:
        return cls(file_data=_data_uri(file_bytes, mime_type), filename=filename)

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> File:
        """A file already uploaded to the provider, by its id."""
        return cls(file_id=file_id, filename=filename)

    def __str__(self) -> str:
        return self.serialize_model()

    def __repr__(self) -> str:
        parts = []
        if self.file_data is not None:
            if self.file_data.startswith("data:"):
                mime = self.file_data.split(";")[0].split(":")[1]
                size = len(self.file_data.split("base64,")[1]) if "base64," in self.file_data else len(self.file_data)
                parts.append(f"file_data=<DATA_URI({mime}, {size} chars)>")
            else:
                parts.append(f"file_data=<DATA({len(self.file_data)} chars)>")
        if self.file_id is not None:
            parts.append(f"file_id='{self.file_id}'")
        if self.filename is not None:
            parts.append(f"filename='{self.filename}'")
        return f"File({', '.join(parts)})"
