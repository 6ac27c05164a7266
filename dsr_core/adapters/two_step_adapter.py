"""TwoStepAdapter: a natural prompt for the main LM, then a second LM extracts the output fields from its reply.

For reasoning models that write good answers but poor structured output. The first call gets a plain task
description (no field markers); the reply goes to ``extraction_model`` through a ChatAdapter signature
``text -> <the original output fields>``. Prompts are DSPy 3.4.1's. Unlike DSPy, the extraction calls count in
the prediction's usage, and with ``n > 1`` the choices are extracted concurrently.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._async import run_sync
from ..errors import AdapterParseError
from ..lm.base import BaseLM
from ..primitives import Usage
from ..signatures import InputField, Signature, make_signature
from .base import Adapter, Message, describe_fields
from .chat import ChatAdapter

if TYPE_CHECKING:
    from ..lm import LM

# a signature -> its extraction signature, made once (ChatAdapter keeps a signature's system message)
_EXTRACTORS: weakref.WeakKeyDictionary[Any, type[Signature]] = weakref.WeakKeyDictionary()


class TwoStepAdapter(Adapter):
    """``TwoStepAdapter(extraction_model)``: the main LM answers in free text, ``extraction_model`` (a cheaper
    LM) fills the output fields from that text."""

    name = "TwoStepAdapter"

    def __init__(self, extraction_model: BaseLM, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(extraction_model, BaseLM):
            raise ValueError(
                f"extraction_model must be an instance of dsr.BaseLM (an LM or a BaseLM subclass), "
                f"got {type(extraction_model).__name__}"
            )
        self.extraction_model = extraction_model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(extraction_model={self.extraction_model!r})"

    # -- the first call ----------------------------------------------------------------------------------------
    def format(
        self, signature: type[Signature], demos: list[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[Message]:
        """The task as a plain description, the demos, then the inputs as ``name: value`` lines."""
        return [
            {"role": "system", "content": self.format_task_description(signature)},
            *self.format_demos(signature, demos),
            {"role": "user", "content": self.format_user_message(signature, inputs)},
        ]

    def format_task_description(self, signature: type[Signature]) -> str:
        parts = [
            "You are a helpful assistant that can solve tasks based on user input.",
            "As input, you will be provided with:\n" + describe_fields(signature.input_fields),
            "Your outputs must contain:\n" + describe_fields(signature.output_fields),
            "You should lay out your outputs in detail so that your answer can be understood by another agent",
        ]
        if signature.instructions:
            parts.append(f"Specific instructions: {signature.instructions}")
        return "\n".join(parts)

    def format_user_message(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        main_request: bool = False,
        suffix: str = "",
    ) -> str:
        """``name: value`` per input given; no output-format reminder (the main LM writes freely)."""
        lines = [f"{name}: {inputs.get(name, '')}" for name in signature.input_fields if name in inputs]
        return "\n\n".join([prefix, *lines, suffix]).strip()

    def format_assistant_message(
        self, signature: type[Signature], outputs: Mapping[str, Any], missing: str | None = None
    ) -> str:
        lines = [f"{name}: {outputs.get(name, missing)}" for name in signature.output_fields if name in outputs]
        return "\n\n".join(lines).strip()

    # -- the extraction ----------------------------------------------------------------------------------------
    def extractor_signature(self, signature: type[Signature]) -> type[Signature]:
        """``text -> <signature's outputs>``, with DSPy's extraction instructions."""
        found = _EXTRACTORS.get(signature)
        if found is None:
            outputs = ", ".join(f"`{name}`" for name in signature.output_fields)
            instructions = (
                f"The input is a text that should contain all the necessary information to produce the fields "
                f"{outputs}.             Your job is to extract the fields from the text verbatim. Extract "
                "precisely the appropriate value (content) for each field."
            )
            fields = {"text": (str, InputField())}
            fields.update({name: (field.annotation, field) for name, field in signature.output_fields.items()})
            found = _EXTRACTORS[signature] = make_signature(fields, instructions)
        return found

    async def extract(self, signature: type[Signature], text: str) -> tuple[dict[str, Any], Usage]:
        """The output fields of ``signature`` read from ``text`` by the extraction model, and that call's usage."""
        try:
            completions, usage = await ChatAdapter().arun(
                self.extraction_model,
                self.extractor_signature(signature),
                [],
                {"text": text},  # type: ignore[arg-type]
            )
        except AdapterParseError as exc:
            error = AdapterParseError(
                f"TwoStepAdapter: the extraction model could not read the main LM's reply: {exc}",
                raw=text,
                field=exc.field,
                adapter=self.name,
            )
            error.usage = getattr(exc, "usage", Usage())  # type: ignore[attr-defined]
            raise error from exc
        return completions[0], usage

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The extraction call, synchronously (DSPy's ``parse``; ``arun`` awaits ``extract`` instead)."""
        return run_sync(self.extract(signature, completion))[0]

    async def arun(
        self,
        lm: LM,
        signature: type[Signature],
        demos: list[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        *,
        n: int = 1,
        config: Mapping[str, Any] | None = None,
        rollout_id: Any = None,
    ) -> tuple[list[dict[str, Any]], Usage]:
        response = await lm.acall(self.format(signature, demos, inputs), n=n, rollout_id=rollout_id, **(config or {}))
        outputs = [
            (output.get("text"), output.get("tool_calls")) if isinstance(output, dict) else (output, None)
            for output in response
        ]
        try:
            extracted = await asyncio.gather(*(self.extract(signature, text or "") for text, _ in outputs))
        except AdapterParseError as exc:
            exc.usage = response.usage + getattr(exc, "usage", Usage())  # type: ignore[attr-defined]
            raise
        usage, completions = response.usage, []
        output_name = self.tool_call_output_field_name(signature)
        for (value, extract_usage), (_, tool_calls) in zip(extracted, outputs, strict=True):
            usage = usage + extract_usage
            if tool_calls and output_name:
                from .tool import ToolCalls, provider_tool_call

                value[output_name] = ToolCalls.from_dict_list([provider_tool_call(call) for call in tool_calls])
            completions.append(value)
        return completions, usage
