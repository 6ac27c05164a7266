"""Image: a picture as an input field, sent as an OpenAI ``image_url`` content part.

From an http(s)/gs URL or a ``data:`` URI as given, from raw bytes (PNG, JPEG, GIF, WebP: the format is read
from the bytes, no imaging library needed) or from a local file (``Image.from_path``).
"""

from __future__ import annotations

import base64
import mimetypes
import os
from typing import Any
from urllib.parse import urlparse

import pydantic

from .custom_types import Type

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def _is_url(text: str) -> bool:
    try:
        parts = urlparse(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https", "gs") and bool(parts.netloc)


def _sniff(data: bytes) -> str:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError("the bytes are not a PNG, JPEG, GIF or WebP image")


def encode_image(image: Any) -> str:
    """A URL or ``data:`` URI for ``image`` (a URL, a data URI, bytes, an ``Image`` or ``{"url": ...}``)."""
    if isinstance(image, Image):
        return image.url
    if isinstance(image, dict) and "url" in image:
        return encode_image(image["url"])
    if isinstance(image, str):
        if image.startswith("data:") or _is_url(image):
            return image
        raise ValueError(
            f"Unrecognized image string: {image[:100]}. Local files must be loaded with Image.from_path()."
        )
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        return f"data:{_sniff(data)};base64,{base64.b64encode(data).decode('ascii')}"
    raise ValueError(f"Unsupported image type: {type(image).__name__}")


class Image(Type):
    """``dsr.Image("https://.../cat.png")``, ``dsr.Image(url=...)``, ``dsr.Image(png_bytes)``."""

    url: str

    model_config = pydantic.ConfigDict(
        defer_build=True, frozen=True, str_strip_whitespace=True, validate_assignment=True, extra="forbid"
    )

    def __init__(self, source: Any = None, **data: Any) -> None:
        if source is not None and "url" in data:
            raise TypeError("Image received both `source` and `url`; provide only one image source")
        data.pop("download", None)  # DSPy's deprecated flag; a URL is always sent as a URL here
        data.pop("verify", None)
        if source is not None:
            data["url"] = source
        if "url" in data:
            data["url"] = encode_image(data["url"])
        super().__init__(**data)

    def format(self) -> list[dict[str, Any]]:
        return [{"type": "image_url", "image_url": {"url": self.url}}]

    @classmethod
    def from_path(cls, file_path: str) -> Image:
        """A local image file as a data URI (the MIME type from its name, else from its bytes)."""
        if not os.path.isfile(file_path):
            raise ValueError(f"File not found: {file_path}")
        with open(file_path, "rb") as handle:
            data = handle.read()
        mime = mimetypes.guess_type(file_path)[0] or _sniff(data)
        return cls(f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}")

    from_file = from_path

    def __str__(self) -> str:
        return str(self.serialize_model())

    def __repr__(self) -> str:
        if "base64," in self.url:
            encoded = self.url.split("base64,", 1)[1]
            kind = self.url.split(";", 1)[0].split("/")[-1]
            return f"Image(url=data:image/{kind};base64,<IMAGE_BASE_64_ENCODED({len(encoded)})>)"
        return f"Image(url='{self.url}')"
