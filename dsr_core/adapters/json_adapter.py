"""JSONAdapter: asks for one JSON object with the output fields, and repairs near-JSON replies.

It requests ``response_format={"type": "json_schema", ...}`` built from the output fields; an endpoint
that rejects that (HTTP 400) is remembered for its model (``runtime().json_schema_rejected``, keyed by base URL
and model) and asked with ``{"type": "json_object"}`` from then on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import AdapterParseError, LMError
from ..primitives import Usage
from ..runtime import runtime
from ..signatures import Signature
from .base import Adapter
from .chat import parse_fields
from .types import jsonable, output_type_note, python_type_reminder

if TYPE_CHECKING:
    from ..lm import LM


def _endpoint_model(lm: Any) -> tuple[str, str]:
    """What the memo of endpoints that reject ``json_schema`` is keyed by: the LM's base URL and model."""
    return str(getattr(lm, "api_base", None) or ""), str(getattr(lm, "model", None) or "")


def repair_json(text: str) -> Any:
    """Parse a JSON object out of near-JSON: code fences, prose around it, trailing commas, truncation."""
    stripped = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.DOTALL)
    if fence:
        stripped = fence.group(1).strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    start = stripped.find("{")
    if start >= 0:
        stripped = stripped[start:]
    import json_repair  # deferred: only replies that are not clean JSON pay for it

    return json_repair.loads(stripped)


class JSONAdapter(Adapter):
    """DSPy's JSON format. Unlike ChatAdapter it uses native function calling by default (as DSPy's does)."""

    name = "JSONAdapter"

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            parallel_tool_calls=parallel_tool_calls,
        )

    def __repr__(self) -> str:
        return "JSONAdapter()"

    def format_field_structure(self, signature: type[Signature]) -> str:
        inputs = "\n\n".join(f"[[ ## {n} ## ]]\n{{{n}}}" for n in signature.input_fields)
        outputs = json.dumps(
            {n: f"{{{n}}}{output_type_note(f)}" for n, f in signature.output_fields.items()},
            indent=2,
            ensure_ascii=False,
        )
        parts = [
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            "Inputs will have the following structure:",
            inputs,
            "Outputs will be a JSON object with the following fields.",
            outputs,
        ]
        return "\n\n".join(parts).strip()

    def output_requirements(self, signature: type[Signature]) -> str:
        fields = ", then ".join(f"`{n}`{python_type_reminder(f)}" for n, f in signature.output_fields.items())
        return f"Respond with a JSON object in the following order of fields: {fields}."

    def format_assistant_message(
        self, signature: type[Signature], outputs: Mapping[str, Any], missing: str | None = None
    ) -> str:
        values = {n: jsonable(outputs.get(n, missing)) for n in signature.output_fields}
        return json.dumps(values, indent=2, ensure_ascii=False)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        try:
            values = repair_json(completion)
        except Exception:  # noqa: BLE001 - any failure to find an object is a parse error
            values = None
        if not isinstance(values, dict):
            raise AdapterParseError(
                f"JSONAdapter: the reply is not a JSON object: {completion[:200]!r}",
                raw=completion,
                field=None,
                adapter=self.name,
            )
        return parse_fields(self.name, signature, values, completion)

    def request_options(self, lm: LM, signature: type[Signature]) -> dict[str, Any]:
        tool_calls = self.tool_call_output_field_name(signature)
        # as DSPy: a ToolCalls output answered in the text gets plain JSON mode; answered natively, the schema
        # leaves it out
        rejected = _endpoint_model(lm) in runtime().json_schema_rejected
        if rejected or (tool_calls and not self.use_native_function_calling):
            return {"response_format": {"type": "json_object"}}
        import pydantic  # on first use: building schemas is the only thing this adapter needs it for

        try:
            schema = _output_schema(signature, skip=tool_calls)
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticInvalidForJsonSchema, TypeError):
            return {"response_format": {"type": "json_object"}}
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "outputs", "schema": schema, "strict": False},
            }
        }

    async def arun(
        self,
        lm: LM,
        signature: type[Signature],
        demos: list[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        **kwargs: Any,
    ) -> tuple[list[dict[str, Any]], Usage]:
        try:
            return await super().arun(lm, signature, demos, inputs, **kwargs)
        except LMError as exc:
            key, rejected = _endpoint_model(lm), runtime().json_schema_rejected
            if exc.status_code != 400 or key in rejected or "response_format" in (kwargs.get("config") or {}):
                raise
            # The endpoint does not take json_schema; remember that and use plain JSON mode.
            rejected.add(key)
            return await super().arun(lm, signature, demos, inputs, **kwargs)


def _output_schema(signature: type[Signature], skip: str | None = None) -> dict[str, Any]:
    import pydantic

    model = pydantic.create_model(  # type: ignore[call-overload]
        "Outputs", **{n: (f.annotation, ...) for n, f in signature.output_fields.items() if n != skip}
    )
    return model.model_json_schema()
