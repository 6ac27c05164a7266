"""The adapter template: a signature + demos + inputs become chat messages; a reply becomes typed outputs.

Concrete adapters override the small ``format_*`` pieces and ``parse``; the call sequence lives here.
The prompts follow DSPy 3.x's text exactly, so a program optimized with DSPy sends the same messages.

Two ways to call an adapter. DSPy's: ``adapter(lm, lm_kwargs, signature, demos, inputs)`` (or ``await
adapter.acall(...)`` with the same arguments) returns one dict of outputs per completion. dsr's:
``await adapter.arun(lm, signature, demos, inputs, n=..., config=..., rollout_id=...)`` returns the
completions and the usage behind them; ``acall`` with a signature as its second argument is that form too.
"""

from __future__ import annotations

import collections
import textwrap
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._async import run_sync
from ..callback import with_callbacks
from ..errors import AdapterParseError
from ..primitives import Usage
from ..signatures import Field, Signature, SignatureMeta, annotation_name
from .markers import loaded, split_message_content
from .types import format_value

if TYPE_CHECKING:
    from ..lm import LM

Message = dict[str, Any]


# dsr's adapter classes -> signature -> system message (weak: a signature dropped by its program goes)
_SYSTEM_MESSAGES: collections.defaultdict[type, weakref.WeakKeyDictionary[Any, str]] = collections.defaultdict(
    weakref.WeakKeyDictionary
)


class Adapter:
    name = "Adapter"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every adapter's ``format`` and ``parse`` report to the callbacks (DSPy's mechanism)."""
        super().__init_subclass__(**kwargs)
        for name in ("format", "parse"):
            if name in cls.__dict__:
                setattr(cls, name, with_callbacks(cls.__dict__[name]))

    def __init__(self, callbacks: list[Any] | None = None, use_native_function_calling: bool = False) -> None:
        self.callbacks = list(callbacks or [])
        self.use_native_function_calling = use_native_function_calling

    # -- formatting --------------------------------------------------------------------------------------------
    def format(
        self, signature: type[Signature], demos: list[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[Message]:
        """The messages for one call: system, demo turns, history turns, then the request (DSPy's order)."""
        inputs = dict(inputs)
        history_field = self.history_field_name(signature)
        request_signature = signature
        history: list[Message] = []
        if history_field is not None:
            request_signature = signature.delete(history_field)
            history = self.format_conversation_history(request_signature, history_field, inputs)
            inputs.pop(history_field, None)
        messages: list[Message] = [{"role": "system", "content": self.format_system_message(signature)}]
        messages.extend(self.format_demos(signature, demos))
        messages.extend(history)
        content = self.format_user_message(request_signature, inputs, main_request=True)
        if content:
            messages.append({"role": "user", "content": content})
        return split_message_content(messages)

    def format_system_message(self, signature: type[Signature]) -> str:
        """The field descriptions, the structure and the task. A signature is immutable, so dsr's own adapters
        keep the text per signature (it is most of the formatting work of a call); a subclass, which may format
        from its own state, builds it every time."""
        cache = _SYSTEM_MESSAGES[type(self)] if type(self).__module__.startswith("dsr_core.") else None
        text = cache.get(signature) if cache is not None else None
        if text is None:
            text = (
                f"{self.format_field_description(signature)}\n"
                f"{self.format_field_structure(signature)}\n"
                f"{self.format_task_description(signature)}"
            )
            if cache is not None:
                cache[signature] = text
        return text

    def format_field_description(self, signature: type[Signature]) -> str:
        return (
            f"Your input fields are:\n{describe_fields(signature.input_fields)}\n"
            f"Your output fields are:\n{describe_fields(signature.output_fields)}"
        )

    def format_field_structure(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def format_task_description(self, signature: type[Signature]) -> str:
        instructions = textwrap.dedent(signature.instructions)
        objective = ("\n" + " " * 8).join([""] + instructions.splitlines())
        return f"In adhering to this structure, your objective is: {objective}"

    def format_user_message(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        main_request: bool = False,
        suffix: str = "",
    ) -> str:
        parts = [prefix]
        for name, field in signature._inputs.items():
            if name in inputs:
                parts.append(f"[[ ## {name} ## ]]\n{format_value(field, inputs[name])}")
        if main_request:
            parts.append(self.output_requirements(signature))
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        """DSPy's name (and argument order) for ``format_user_message``."""
        return self.format_user_message(signature, inputs, prefix=prefix, main_request=main_request, suffix=suffix)

    def output_requirements(self, signature: type[Signature]) -> str:
        raise NotImplementedError

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        """DSPy's name for ``output_requirements``."""
        return self.output_requirements(signature)

    def format_assistant_message(
        self, signature: type[Signature], outputs: Mapping[str, Any], missing: str | None = None
    ) -> str:
        raise NotImplementedError

    def format_assistant_message_content(
        self, signature: type[Signature], outputs: Mapping[str, Any], missing_field_message: str | None = None
    ) -> str:
        """DSPy's name for ``format_assistant_message``."""
        return self.format_assistant_message(signature, outputs, missing=missing_field_message)

    def format_demos(self, signature: type[Signature], demos: list[Mapping[str, Any]]) -> list[Message]:
        complete, partial = [], []
        for demo in demos:
            if all(demo.get(k) is not None for k in signature.fields):
                complete.append(demo)
            elif any(k in demo for k in signature._inputs) and any(k in demo for k in signature._outputs):
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

    def history_field_name(self, signature: type[Signature]) -> str | None:
        """The input field that carries a ``History``, if any."""
        history = loaded("history", "History")
        if history is None:
            return None
        return next((n for n, f in signature._inputs.items() if f.annotation is history), None)

    _get_history_field_name = history_field_name  # DSPy's name

    def format_conversation_history(
        self, signature: type[Signature], history_field_name: str, inputs: Mapping[str, Any]
    ) -> list[Message]:
        """One user turn (input fields, then the output requirements) and one assistant turn (output fields)
        per message of the history; a message with no input field gets no user turn.

        ``signature`` is the signature without the history field. A message given as ``{"role", "content"}``
        is passed through unchanged.
        """
        from .history import History, is_raw_message

        history = inputs.get(history_field_name)
        if history is None:
            return []
        if isinstance(history, Mapping):
            history = History(**history)
        messages: list[Message] = []
        for message in history.messages:
            if is_raw_message(message):
                messages.append(dict(message))
                continue
            # As DSPy: each earlier request keeps its output-format reminder (prompt-cache reuse); an output-only
            # message gets no user turn at all.
            main_request = any(name in message for name in signature._inputs)
            user_content = self.format_user_message(signature, message, main_request=main_request)
            if user_content:
                messages.append({"role": "user", "content": user_content})
            assistant_content = self.format_assistant_message(signature, message)
            if assistant_content:
                messages.append({"role": "assistant", "content": assistant_content})
        if isinstance(inputs, dict):
            inputs.pop(history_field_name, None)  # DSPy removes it from the inputs it was given
        return messages

    def format_finetune_data(
        self,
        signature: type[Signature],
        demos: list[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
    ) -> dict[str, list[Message]]:
        """The call as one OpenAI fine-tuning record: the messages plus the assistant's answer."""
        messages = self.format(signature, demos, inputs)
        messages.append({"role": "assistant", "content": self.format_assistant_message(signature, outputs)})
        return {"messages": messages}

    # -- parsing -----------------------------------------------------------------------------------------------
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        raise NotImplementedError

    # -- calling -----------------------------------------------------------------------------------------------
    def request_options(self, lm: LM, signature: type[Signature]) -> dict[str, Any]:
        """Extra request parameters this adapter needs (JSON mode)."""
        return {}

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
        """Format, call the LM, parse every choice. Returns (completions, usage)."""
        messages = self.format(signature, demos, inputs)
        options = {**self.request_options(lm, signature), **(config or {})}
        response = await lm.acall(messages, n=n, rollout_id=rollout_id, **options)
        completions, first_error = [], None
        finish_reasons = response.finish_reasons
        for i, text in enumerate(response.texts):
            try:
                completions.append(self.parse(signature, text))
            except AdapterParseError as exc:
                if i < len(finish_reasons) and finish_reasons[i] == "length":
                    exc = cut_reply_error(exc, self.name, max_tokens_of(lm, options))
                first_error = first_error or exc
        if not completions:
            assert first_error is not None
            first_error.usage = response.usage  # type: ignore[attr-defined]
            raise first_error
        return completions, response.usage

    async def acall(self, lm: LM, *args: Any, **kwargs: Any) -> Any:
        """DSPy's ``await adapter.acall(lm, lm_kwargs, signature, demos, inputs)`` -> a list of output dicts.

        With a signature as the second argument (``acall(lm, signature, demos, inputs, n=..., config=...)``)
        it is ``arun`` and returns (completions, usage), the form dsr's own callers use.
        """
        if (args and isinstance(args[0], SignatureMeta)) or ("signature" in kwargs and "lm_kwargs" not in kwargs):
            return await self.arun(lm, *args, **kwargs)
        lm_kwargs, signature, demos, inputs = _dspy_arguments(args, kwargs)
        options = dict(lm_kwargs or {})
        n = int(options.pop("n", 1) or 1)
        rollout_id = options.pop("rollout_id", None)
        completions, _ = await self.arun(
            lm, signature, list(demos or []), dict(inputs or {}), n=n, config=options, rollout_id=rollout_id
        )
        return completions

    def __call__(self, lm: LM, *args: Any, **kwargs: Any) -> Any:
        """DSPy's ``adapter(lm, lm_kwargs, signature, demos, inputs)``: a list of dicts, one per completion."""
        return run_sync(self.acall(lm, *args, **kwargs))


def max_tokens_of(lm: Any, options: Mapping[str, Any]) -> int | None:
    """The completion limit a request was sent with: the call's, else the LM's."""
    for source in (options, getattr(lm, "kwargs", None) or {}):
        for name in ("max_tokens", "max_completion_tokens"):
            if source.get(name) is not None:
                return int(source[name])
    limit = getattr(lm, "max_tokens", None)
    return limit if isinstance(limit, int) else None


def cut_reply_error(exc: AdapterParseError, adapter: str, max_tokens: int | None) -> AdapterParseError:
    """The parse error of a reply the LM stopped at its token limit (finish_reason "length"): the reply is
    unfinished, not malformed, and asking again in another format would be cut the same way, so the error
    says what to raise. ``cut_at_max_tokens`` is True on it; ``raw``, ``field`` and ``adapter`` are kept."""
    where = f"before field {exc.field!r} was complete" if exc.field else "before any output field was complete"
    limit = f"max_tokens={max_tokens}" if max_tokens is not None else "max_tokens"
    error = AdapterParseError(
        f"{adapter}: the reply was cut at {limit} (finish_reason 'length') {where}; raise max_tokens "
        f"(LM(max_tokens=...) or config={{'max_tokens': ...}}). Parse error: {exc}",
        raw=exc.raw,
        field=exc.field,
        adapter=exc.adapter or adapter,
    )
    error.cut_at_max_tokens = True  # type: ignore[attr-defined]
    return error


def _dspy_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    names = ("lm_kwargs", "signature", "demos", "inputs")
    values = dict(zip(names, args, strict=False))
    for name in names:
        if name in kwargs:
            values[name] = kwargs.pop(name)
    if kwargs:
        raise TypeError(f"unexpected adapter argument(s) {sorted(kwargs)}")
    missing = [n for n in ("signature", "inputs") if n not in values]
    if missing:
        raise TypeError(f"adapter call is missing {missing}: use adapter(lm, lm_kwargs, signature, demos, inputs)")
    return values.get("lm_kwargs"), values["signature"], values.get("demos"), values["inputs"]


def describe_fields(fields: dict[str, Field]) -> str:
    """DSPy's numbered field list: type, description, custom-type descriptions and constraints."""
    lines = []
    custom_type = loaded("custom_types", "Type")
    for i, (name, field) in enumerate(fields.items()):
        desc = "" if field.desc == f"${{{name}}}" else field.desc
        customs = custom_type.extract_custom_type_from_annotation(field.annotation) if custom_type else []
        for custom in customs:
            if custom.description():
                desc += f"\n    Type description of {annotation_name(custom)}: {custom.description()}"
        line = f"{i + 1}. `{name}` ({annotation_name(field.annotation)}): {desc}"
        if field.constraint_text:
            line += f"\nConstraints: {field.constraint_text}"
        lines.append(line)
    return "\n".join(lines).strip()


_describe_fields = describe_fields


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
