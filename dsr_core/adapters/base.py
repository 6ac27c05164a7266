"""The adapter template: a signature + demos + inputs become chat messages; a reply becomes typed outputs.

Concrete adapters override the small ``format_*`` pieces and ``parse``; the call sequence lives here.
The prompts follow DSPy 3.x's text exactly, so a program optimized with DSPy sends the same messages.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import AdapterParseError
from ..primitives import Usage
from ..signatures import Field, Signature, type_name
from .types import format_value

if TYPE_CHECKING:
    from ..lm import LM


class Adapter:
    name = "Adapter"

    # -- formatting --------------------------------------------------------------------------------------------
    def format(
        self, signature: type[Signature], demos: list[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.format_system_message(signature)}]
        messages.extend(self.format_demos(signature, demos))
        messages.append({"role": "user", "content": self.format_user_message(signature, inputs, main_request=True)})
        return messages

    def format_system_message(self, signature: type[Signature]) -> str:
        return (
            f"{self.format_field_description(signature)}\n"
            f"{self.format_field_structure(signature)}\n"
            f"{self.format_task_description(signature)}"
        )

    def format_field_description(self, signature: type[Signature]) -> str:
        return (
            f"Your input fields are:\n{_describe_fields(signature.input_fields)}\n"
            f"Your output fields are:\n{_describe_fields(signature.output_fields)}"
        )

    def format_field_structure(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def format_task_description(self, signature: type[Signature]) -> str:
        instructions = textwrap.dedent(signature.instructions)
        objective = ("\n" + " " * 8).join([""] + instructions.splitlines())
        return f"In adhering to this structure, your objective is: {objective}"

    def format_user_message(
        self, signature: type[Signature], inputs: Mapping[str, Any], prefix: str = "", main_request: bool = False
    ) -> str:
        parts = [prefix]
        for name, field in signature.input_fields.items():
            if name in inputs:
                parts.append(f"[[ ## {name} ## ]]\n{format_value(field, inputs[name])}")
        if main_request:
            parts.append(self.output_requirements(signature))
        return "\n\n".join(parts).strip()

    def output_requirements(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def format_assistant_message(
        self, signature: type[Signature], outputs: Mapping[str, Any], missing: str | None = None
    ) -> str:
        raise NotImplementedError

    def format_demos(self, signature: type[Signature], demos: list[Mapping[str, Any]]) -> list[dict[str, str]]:
        complete, partial = [], []
        for demo in demos:
            if all(demo.get(k) is not None for k in signature.fields):
                complete.append(demo)
            elif any(k in demo for k in signature.input_fields) and any(k in demo for k in signature.output_fields):
                partial.append(demo)
        messages = []
        prefix = "This is an example of the task, though some input or output fields are not supplied."
        for demo in partial:
            messages.append({"role": "user", "content": self.format_user_message(signature, demo, prefix=prefix)})
            messages.append(
                {
                    "role": "assistant",
                    "content": self.format_assistant_message(
                        signature, demo, missing="Not supplied for this particular example. "
                    ),
                }
            )
        for demo in complete:
            messages.append({"role": "user", "content": self.format_user_message(signature, demo)})
            messages.append({"role": "assistant", "content": self.format_assistant_message(signature, demo)})
        return messages

    # -- parsing -----------------------------------------------------------------------------------------------
    def parse(self, signature: type[Signature], text: str) -> dict[str, Any]:
        raise NotImplementedError

    # -- calling -----------------------------------------------------------------------------------------------
    def request_options(self, lm: LM, signature: type[Signature]) -> dict[str, Any]:
        """Extra request parameters this adapter needs (JSON mode)."""
        return {}

    async def acall(
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
        """Format, call the LM, parse every choice. Returns (completions, usage)."""
        messages = self.format(signature, demos, inputs)
        options = {**self.request_options(lm, signature), **(config or {})}
        response = await lm.acall(messages, n=n, rollout_id=rollout_id, **options)
        completions, first_error = [], None
        for text in response.texts:
            try:
                completions.append(self.parse(signature, text))
            except AdapterParseError as exc:
                first_error = first_error or exc
        if not completions:
            assert first_error is not None
            first_error.usage = response.usage  # type: ignore[attr-defined]
            raise first_error
        return completions, response.usage


def _describe_fields(fields: dict[str, Field]) -> str:
    lines = []
    for i, (name, field) in enumerate(fields.items()):
        desc = "" if field.desc == f"${{{name}}}" else field.desc
        lines.append(f"{i + 1}. `{name}` ({type_name(field.annotation)}): {desc}")
    return "\n".join(lines).strip()


def missing_fields_error(
    adapter: str, signature: type[Signature], text: str, parsed: Mapping[str, Any]
) -> AdapterParseError:
    missing = [k for k in signature.output_fields if k not in parsed]
    return AdapterParseError(
        f"{adapter}: the reply lacks output field(s) {missing} (expected {list(signature.output_fields)}); "
        f"reply starts: {text[:200]!r}",
        raw=text,
        field=missing[0] if missing else None,
        adapter=adapter,
    )
