"""Streaming, as DSPy's ``dspy.streaming``: ``streamify`` a program, listen to output fields with
``StreamListener``, get ``StreamResponse`` pieces, ``StatusMessage``s and the final Prediction."""

from .messages import StatusMessage, StatusMessageProvider, StreamResponse
from .streamify import apply_sync_streaming, streamify, streaming_response
from .streaming_listener import StreamListener

__all__ = [
    "StatusMessage",
    "StatusMessageProvider",
    "StreamListener",
    "StreamResponse",
    "apply_sync_streaming",
    "streamify",
    "streaming_response",
]
