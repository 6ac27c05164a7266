"""What a streamed program yields besides its Prediction: ``StreamResponse`` (a piece of one output field) and
``StatusMessage`` (from a ``StatusMessageProvider``'s hooks), as DSPy's ``dspy.streaming`` has them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..adapters.base import STREAMING
from ..callback import BaseCallback


@dataclass
class StreamResponse:
    """A piece of ``signature_field_name``'s value as the LM writes it; ``is_last_chunk`` on the field's last."""

    predict_name: str
    signature_field_name: str
    chunk: str
    is_last_chunk: bool


@dataclass
class StatusMessage:
    """A status message of a streamed program (what a ``StatusMessageProvider`` hook returned)."""

    message: str


class StatusMessageProvider:
    """The status messages ``streamify`` yields: subclass it and override the hooks you want; a hook returns
    the message (a string), or None for none.

    ``streamify(program, status_message_provider=MyProvider())``; by default only tool calls have messages.
    """

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before a Tool is called."""
        return f"Calling tool {instance.name}..."

    def tool_end_status_message(self, outputs: Any) -> str | None:
        """After a Tool returned."""
        return "Tool calling finished! Querying the LLM with tool calling results..."

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before a Module (a Predict included) is called."""
        return None

    def module_end_status_message(self, outputs: Any) -> str | None:
        """After a Module returned."""
        return None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before an LM is called."""
        return None

    def lm_end_status_message(self, outputs: Any) -> str | None:
        """After an LM returned."""
        return None


class StatusStreamingCallback(BaseCallback):
    """The callback ``streamify`` adds: it turns the provider's messages into ``StatusMessage``s on the stream
    of the streamed call it runs in (none outside one)."""

    def __init__(self, status_message_provider: StatusMessageProvider | None = None) -> None:
        self.status_message_provider = status_message_provider or StatusMessageProvider()

    def _emit(self, message: str | None) -> None:
        session = STREAMING.get()
        if session is not None and message:
            session.send(StatusMessage(message))

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if getattr(instance, "name", None) != "finish":  # ReAct's own last step is no tool call to announce
            self._emit(self.status_message_provider.tool_start_status_message(instance, inputs))

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        if outputs != "Completed.":
            self._emit(self.status_message_provider.tool_end_status_message(outputs))

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._emit(self.status_message_provider.lm_start_status_message(instance, inputs))

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        self._emit(self.status_message_provider.lm_end_status_message(outputs))

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._emit(self.status_message_provider.module_start_status_message(instance, inputs))

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        self._emit(self.status_message_provider.module_end_status_message(outputs))
