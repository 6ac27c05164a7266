"""Adapters turn a signature, demos and inputs into chat messages, and replies into typed outputs."""

from .base import Adapter
from .chat import ChatAdapter
from .json_adapter import JSONAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter"]
