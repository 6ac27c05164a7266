"""Audio: a sound clip as an input field, sent as an OpenAI ``input_audio`` content part (DSPy's ``dspy.Audio``).

Built from in-memory values: a ``data:audio/...;base64,`` URI, raw bytes (``audio_format=``, default "wav"),
a ``{"data", "audio_format"}`` dict, another ``Audio``, or a numpy-like array (needs ``soundfile``, imported
only then). ``Audio.from_path`` reads a local file, ``Audio.from_url`` downloads one, ``Audio.from_array``
encodes samples. Building one never touches the filesystem or the network.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import warnings
from typing import Any
from urllib.parse import urlparse

import pydantic

from .custom_types import Type


def _strip_x(audio_format: str) -> str:
    """``x-wav`` -> ``wav`` (MIME subtypes for audio often carry an ``x-`` prefix)."""
    return audio_format.removeprefix("x-")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _has_own_format(value: Any) -> bool:
    return (
        isinstance(value, Audio)
        or (isinstance(value, dict) and "audio_format" in value)
        or (isinstance(value, str) and value.startswith("data:audio/"))
    )


def encode_audio(audio: Any, sampling_rate: int = 16000, format: str = "wav") -> dict[str, Any]:
    """``{"data": <base64>, "audio_format": ...}`` for a data URI, bytes, a dict, an ``Audio`` or an array."""
    if isinstance(audio, dict) and "data" in audio and "audio_format" in audio:
        return audio
    if isinstance(audio, Audio):
        return {"data": audio.data, "audio_format": audio.audio_format}
    if isinstance(audio, str):
        if not audio.startswith("data:audio/"):
            raise ValueError(
                "String audio inputs must be data URIs. "
                "Load local files with Audio.from_path() and remote resources with Audio.from_url()."
            )
        header, comma, encoded = audio.partition(",")
        mime = header.removeprefix("data:").split(";", 1)[0]
        _, slash, subtype = mime.partition("/")
        if not comma or not slash or not subtype:
            raise ValueError("Malformed audio data URI")
        return {"data": encoded, "audio_format": _strip_x(subtype)}
    if hasattr(audio, "shape"):
        clip = Audio.from_array(audio, sampling_rate=sampling_rate, format=format)
        return {"data": clip.data, "audio_format": clip.audio_format}
    if isinstance(audio, bytes):
        return {"data": _b64(audio), "audio_format": format}
    raise ValueError(f"Unsupported type for encode_audio: {type(audio)}")


class Audio(Type):
    """``dsr.Audio(data=<base64>, audio_format="wav")``, ``dsr.Audio(wav_bytes)``, ``dsr.Audio("data:audio/...")``."""

    data: str
    audio_format: str

    model_config = pydantic.ConfigDict(defer_build=True, frozen=True, extra="forbid")

    def __init__(self, *args: Any, **data: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"Audio expected at most 1 positional argument, received {len(args)}")
        if args:
            if "data" in data:
                raise TypeError("Audio received data as both a positional and keyword argument")
            source = args[0]
            sampling_rate = data.pop("sampling_rate", None)
            audio_format = data.pop("audio_format", None)
            if audio_format is not None and _has_own_format(source):
                raise TypeError(
                    "Audio received audio_format alongside an input that already carries its format; provide only one"
                )
            if sampling_rate is not None and not hasattr(source, "shape"):
                raise TypeError("Audio received sampling_rate for a non-array input; it only applies to array data")
            data = {**encode_audio(source, sampling_rate=sampling_rate or 16000, format=audio_format or "wav"), **data}
        super().__init__(**data)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _normalize(cls, values: Any) -> Any:
        if isinstance(values, cls):
            return {"data": values.data, "audio_format": values.audio_format}
        return encode_audio(values)

    def format(self) -> list[dict[str, Any]]:
        return [{"type": "input_audio", "input_audio": {"data": self.data, "format": self.audio_format}}]

    @classmethod
    def from_url(cls, url: str, verify: bool = True, timeout: float | None = 30.0) -> Audio:
        """Download an HTTP(S) audio file (its format from the response's ``Content-Type``, default wav).

        The fetch is the caller's: no host checks are made, so validate untrusted URLs first.
        """
        import ssl
        import urllib.request

        parts = urlparse(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"Audio.from_url requires an HTTP(S) URL, received: {url}")
        context = None
        if not verify:  # the caller's choice, as in DSPy (a self-signed certificate)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            body = response.read()
            mime = response.headers.get("Content-Type", "audio/wav")
        if not mime.startswith("audio/"):
            raise ValueError(f"Unsupported MIME type for audio: {mime}")
        return cls(data=_b64(body), audio_format=_strip_x(mime.split("/")[1]))

    @classmethod
    def from_path(cls, file_path: str) -> Audio:
        """A local audio file (its format from the file name's MIME type)."""
        if not os.path.isfile(file_path):
            raise ValueError(f"File not found: {file_path}")
        mime = mimetypes.guess_type(file_path)[0]
        if not mime or not mime.startswith("audio/"):
            raise ValueError(f"Unsupported MIME type for audio: {mime}")
        with open(file_path, "rb") as handle:
            body = handle.read()
        return cls(data=_b64(body), audio_format=_strip_x(mime.split("/")[1]))

    @classmethod
    def from_file(cls, file_path: str) -> Audio:
        """Deprecated (as in DSPy): use ``from_path``."""
        warnings.warn("Audio.from_file is deprecated; use Audio.from_path instead.", DeprecationWarning, stacklevel=2)
        return cls.from_path(file_path)

    @classmethod
    def from_array(cls, array: Any, sampling_rate: int, format: str = "wav") -> Audio:
        """Samples (a numpy-like array) encoded as 16-bit PCM in ``format``; needs the ``soundfile`` package."""
        try:
            import soundfile
        except ImportError as exc:
            raise ImportError("soundfile is required to process audio arrays.") from exc
        buffer = io.BytesIO()
        soundfile.write(buffer, array, sampling_rate, format=format.upper(), subtype="PCM_16")
        return cls(data=_b64(buffer.getvalue()), audio_format=format)

    def __str__(self) -> str:
        return self.serialize_model()

    def __repr__(self) -> str:
        return f"Audio(data=<AUDIO_BASE_64_ENCODED({len(self.data)})>, audio_format='{self.audio_format}')"
