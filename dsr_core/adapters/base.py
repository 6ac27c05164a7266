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
import contextvars
import textwrap
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, get_args, get_origin

from .._async import run_sync
from ..callback import with_callbacks_once
from ..errors import AdapterParseError
from ..primitives import Usage
from ..signatures import Field, Signature, SignatureMeta, annotation_name, make_signature
from .markers import loaded, split_message_content
from .types import format_value

if TYPE_CHECKING:
    from ..lm import LM

Message = dict[str, Any]

# Streaming's seam (dsr_core.streaming sets these): the streamed call running the program, which a Predict
# asks for its sink; and the sink of the Predict call running now, through which ``arun`` calls the LM
# (``await sink.complete(lm, adapter, messages, ...)`` streams the reply). None: a plain call.
STREAMING: contextvars.ContextVar[Any] = contextvars.ContextVar("dsr_streaming", default=None)
STREAM_TO: contextvars.ContextVar[Any] = contextvars.ContextVar("dsr_stream_to", default=None)


# dsr's adapter classes -> signature -> system message (weak: a signature dropped by its program goes)
_SYSTEM_MESSAGES: collections.defaultdict[type, weakref.WeakKeyDictionary[Any, str]] = collections.defaultdict(
    weakref.WeakKeyDictionary
)


class Adapter:
    name = "Adapter"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every adapter's ``format`` and ``parse``, its own or inherited, report to the callbacks once per call
        (DSPy wraps them on every subclass; an inherited method already wrapped is left as it is)."""
        super().__init_subclass__(**kwargs)
        for name in ("format", "parse"):
            method = getattr(cls, name)
            if not getattr(method, "__dsr_callbacks__", False):
                setattr(cls, name, with_callbacks_once(method))

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        self.callbacks = list(callbacks or [])
        # DSPy's: with a ``ToolCalls`` output and a ``list[Tool]`` input, send the tools as the request's
        # ``tools`` and read the reply's ``tool_calls`` (``_call_preprocess``, ``parse_output``)
        self.use_native_function_calling = use_native_function_calling
        self.parallel_tool_calls = parallel_tool_calls  # the request's parallel_tool_calls then, unless None

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

    def tool_call_input_field_name(self, signature: type[Signature]) -> str | None:
        """The input field annotated ``list[Tool]`` or ``Tool``, if any."""
        tool = loaded("tool", "Tool")
        if tool is None:
            return None
        for name, field in signature._inputs.items():
            annotation = field.annotation
            if annotation is tool or (get_origin(annotation) is list and get_args(annotation)[:1] == (tool,)):
                return name
        return None

    def tool_call_output_field_name(self, signature: type[Signature]) -> str | None:
        """The output field annotated ``ToolCalls``, if any."""
        tool_calls = loaded("tool", "ToolCalls")
        if tool_calls is None:
            return None
        return next((n for n, f in signature._outputs.items() if f.annotation is tool_calls), None)

    _get_tool_call_input_field_name = tool_call_input_field_name  # DSPy's names
    _get_tool_call_output_field_name = tool_call_output_field_name

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

    def _call_preprocess(
        self, lm: LM, lm_kwargs: dict[str, Any], signature: type[Signature], inputs: Mapping[str, Any]
    ) -> type[Signature]:
        """DSPy's: the signature the prompt is formatted from, with ``lm_kwargs`` (the request options, edited
        in place) set for native function calling. Without it, ``tools``, ``tool_choice`` and
        ``parallel_tool_calls`` are dropped from the options; with it, a ``ToolCalls`` output and a tools input
        leave the prompt and the tools go as ``tools`` (when the LM ``supports_function_calling``)."""
        tool_options = ("tools", "tool_choice", "parallel_tool_calls")
        if not self.use_native_function_calling:
            for key in tool_options:
                lm_kwargs.pop(key, None)
            return signature
        input_name = self.tool_call_input_field_name(signature)
        output_name = self.tool_call_output_field_name(signature)
        if output_name and input_name is None:
            raise ValueError(
                f"You provided an output field {output_name} to receive the tool calls information, but did not "
                "provide any tools as the input. Please provide a list of tools as the input by adding an input "
                "field with type `list[dspy.Tool]`."
            )
        if output_name and input_name and getattr(lm, "supports_function_calling", False):
            tools = inputs[input_name]
            tools = tools if isinstance(tools, list) else [tools]
            lm_kwargs["tools"] = [tool.format_as_litellm_function_call() for tool in tools]
            if self.parallel_tool_calls is not None and lm_kwargs.get("parallel_tool_calls") is None:
                lm_kwargs["parallel_tool_calls"] = self.parallel_tool_calls
            return _delete_fields(signature, output_name, input_name)
        if output_name:
            for key in tool_options:
                lm_kwargs.pop(key, None)
        return signature

    def parse_output(
        self, processed_signature: type[Signature], signature: type[Signature], output: Any
    ) -> dict[str, Any]:
        """One choice's outputs (DSPy's ``_call_postprocess`` for one output): ``output`` is its text, or a dict
        with ``text`` and ``tool_calls`` when the reply called tools. The calls fill the ``ToolCalls`` field;
        with them, a text that does not parse is ignored. Output fields the prompt did not ask for are None."""
        text, tool_calls = (
            (output.get("text"), output.get("tool_calls")) if isinstance(output, dict) else (output, None)
        )
        output_name = self.tool_call_output_field_name(signature) if tool_calls else None
        if not output_name:
            value = self.parse(processed_signature, text or "")
        elif text and processed_signature.output_fields:
            try:
                value = self.parse(processed_signature, text)
            except AdapterParseError:
                value = {}
        else:
            value = {}
        if processed_signature is not signature or output_name:
            value = {name: value.get(name) for name in signature.output_fields}
        if output_name:
            from .tool import ToolCalls, provider_tool_call

            value[output_name] = ToolCalls.from_dict_list([provider_tool_call(call) for call in tool_calls])
        return value

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
        options = {**self.request_options(lm, signature), **(config or {})}
        processed = self._call_preprocess(lm, options, signature, inputs)
        messages = self.format(processed, demos, inputs)
        if options.get("parallel_tool_calls") is not None:
            options.setdefault("tool_choice", "auto")
        sink = STREAM_TO.get()
        if sink is None:
            response = await lm.acall(messages, n=n, rollout_id=rollout_id, **options)
        else:
            response = await sink.complete(lm, self, messages, n=n, rollout_id=rollout_id, **options)
        completions, first_error = [], None
        finish_reasons = response.finish_reasons
        for i, output in enumerate(response):
            try:
                completions.append(self.parse_output(processed, signature, output))
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
        """DSPy's ``adapter(lm, lm_kwargs, signature, demos, inputs)``: a list of dicts, one per completion.
        The base ``acall`` does the work, not a subclass's override of it: DSPy's two entry points are separate
        paths, so a subclass that overrides both sees one call each time."""
        return run_sync(Adapter.acall(self, lm, *args, **kwargs))


# signature -> (deleted field names, the signature without them): the same signature each call, so its system
# message is formatted once (weak: it goes with the signature it was made from, which it does not reference)
_WITHOUT_FIELDS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], type[Signature]]] = weakref.WeakKeyDictionary()


def _delete_fields(signature: type[Signature], *names: str) -> type[Signature]:
    """``signature.delete(name)`` for each name. DSPy's may leave no output field (when the ToolCalls output,
    answered by the tool calls themselves, was the only one), which dsr's ``make_signature`` refuses; that
    signature is built here the way ``make_signature`` builds one, so it formats as DSPy's does."""
    known = _WITHOUT_FIELDS.get(signature)
    if known is not None and known[0] == names:
        return known[1]
    kept = {n: f for n, f in signature.fields.items() if n not in names}
    if any(f.kind == "output" for f in kept.values()):
        result = make_signature(kept, signature.instructions, base=signature)
    else:
        namespace = {
            "fields": kept,
            "_inputs": dict(kept),
            "_outputs": {},
            "instructions": signature.instructions,
            "__module__": signature.__module__,
            "__doc__": None,
        }
        result = type.__new__(SignatureMeta, signature.__name__, (Signature,), namespace)
    _WITHOUT_FIELDS[signature] = (names, result)
    return result


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
