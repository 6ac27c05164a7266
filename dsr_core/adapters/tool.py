"""Tool (a Python function an LM program may call) and ToolCalls (an LM's request to call tools), as in DSPy.

``Tool(fn)`` reads the name, the docstring and the typed arguments of ``fn``; ``tool.args`` is a JSON schema
per argument, the text ReAct shows the LM. Calling a tool checks the arguments against that schema and
converts them to the annotated types (a dict becomes the pydantic model the function expects).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, get_origin, get_type_hints

import pydantic

from .._async import is_async_callable
from ..callback import with_callbacks
from ..runtime import runtime
from .custom_types import Type
from .types import type_adapter

log = logging.getLogger(__name__)


class Tool:
    """A callable with a name, a description and a JSON schema for each argument.

    Whatever is given (``name``, ``desc``, ``args``, ``arg_types``) is used as is; the rest is read from the
    function. ``arg_desc`` adds a description to an argument's schema.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        desc: str | None = None,
        args: dict[str, Any] | None = None,
        arg_types: dict[str, Any] | None = None,
        arg_desc: dict[str, str] | None = None,
    ) -> None:
        self.func = func
        self.name = name
        self.desc = desc
        self.args = args
        self.arg_types = arg_types
        self.arg_desc = arg_desc
        self.has_kwargs = False
        self._parse_function(func, arg_desc)

    def _parse_function(self, func: Callable[..., Any], arg_desc: dict[str, str] | None) -> None:
        annotations_func = func if inspect.isfunction(func) or inspect.ismethod(func) else func.__call__  # type: ignore[operator]
        name = getattr(func, "__name__", type(func).__name__)
        desc = getattr(func, "__doc__", None) or getattr(annotations_func, "__doc__", "")
        signature = inspect.signature(annotations_func)
        available = _type_hints(annotations_func)
        args: dict[str, Any] = {}
        arg_types: dict[str, Any] = {}
        for param_name, param in signature.parameters.items():  # *args and **kwargs too, as DSPy lists them
            annotation = available.get(param_name, Any)
            arg_types[param_name] = annotation
            args[param_name] = json_schema_for(annotation)
            if param.default is not inspect.Parameter.empty:
                args[param_name]["default"] = _json_default(param.default)
            if arg_desc and param_name in arg_desc:
                args[param_name]["description"] = arg_desc[param_name]
        self.name = self.name or name
        self.desc = self.desc or desc
        self.args = self.args if self.args is not None else args
        self.arg_types = self.arg_types if self.arg_types is not None else arg_types
        self.has_kwargs = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())

    # -- calling -----------------------------------------------------------------------------------------------
    def _validate_and_parse_args(self, **kwargs: Any) -> dict[str, Any]:
        """Check each argument against its JSON schema, then convert it to the annotated type."""
        schemas = self.args or {}
        for key, value in kwargs.items():
            if key not in schemas:
                if self.has_kwargs:
                    continue
                raise ValueError(f"Arg {key} is not in the tool's args.")
            _validate_against_schema(key, value, schemas[key], (self.arg_types or {}).get(key, Any))
        parsed = {}
        for key, value in kwargs.items():
            annotation = (self.arg_types or {}).get(key, Any)
            parsed[key] = value if annotation is Any else type_adapter(annotation).validate_python(value)
        return parsed

    @with_callbacks
    def __call__(self, **kwargs: Any) -> Any:
        """Call the tool in this thread. An async tool needs ``acall``, or the setting
        ``allow_tool_async_sync_conversion=True`` to run its coroutine to completion here (DSPy's rule)."""
        parsed = self._validate_and_parse_args(**kwargs)
        result = self.func(**parsed)
        if inspect.isawaitable(result):
            if not _async_sync_conversion_allowed():
                if inspect.iscoroutine(result):
                    result.close()
                raise ValueError(
                    "You are calling `__call__` on an async tool, please use `acall` instead or enable "
                    "async-to-sync conversion with `dsr.configure(allow_tool_async_sync_conversion=True)` "
                    "or `with dsr.context(allow_tool_async_sync_conversion=True):`."
                )
            from .._async import run_sync

            return run_sync(_awaited(result))
        return result

    @with_callbacks
    async def acall(self, **kwargs: Any) -> Any:
        """Call the tool from async code: coroutine functions are awaited, plain functions run in a worker
        thread so a slow tool does not hold up the other calls on the event loop."""
        parsed = self._validate_and_parse_args(**kwargs)
        if is_async_callable(self.func):
            result = self.func(**parsed)
        else:
            ctx = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                runtime().forward_pool(), functools.partial(ctx.run, self.func, **parsed)
            )
        if inspect.isawaitable(result):
            result = await result
        return result

    # -- tools from elsewhere -------------------------------------------------------------------------------------
    @classmethod
    def from_mcp_tool(cls, session: Any, tool: Any, *, result_mode: str = "text") -> Tool:
        """A tool that calls MCP tool ``tool`` through ``session`` (anything with an async ``call_tool``: mcp's
        ``ClientSession`` or ``Client``). The result is its text content (one text, or a list of them; the
        non-text parts when there is no text); ``result_mode="structured"`` returns the structured content when
        the server sent some. A result the server marks as an error raises RuntimeError with its text."""
        if result_mode not in ("text", "structured"):
            raise ValueError(f"Unsupported MCP result mode: {result_mode!r} (expected 'text' or 'structured')")
        schema = _first_attribute(tool, ("input_schema", "inputSchema"), {}) or {}
        args, arg_types, arg_desc = convert_input_schema_to_tool_args(schema)

        async def call_mcp_tool(**kwargs: Any) -> Any:
            result = await session.call_tool(tool.name, arguments=kwargs)
            return _mcp_result(result, result_mode)

        return cls(call_mcp_tool, tool.name, tool.description, args, arg_types, arg_desc)

    @classmethod
    def from_langchain(cls, tool: Any) -> Tool:
        """A tool that runs LangChain tool ``tool`` (``@tool`` or a ``BaseTool``) with ``ainvoke``; its
        arguments and their types come from the tool's ``args_schema``."""
        schema = tool.args_schema
        args, _, arg_desc = convert_input_schema_to_tool_args(schema.model_json_schema())
        arg_types = {name: field.annotation or Any for name, field in schema.model_fields.items()}

        async def call_langchain_tool(**kwargs: Any) -> Any:
            try:
                return await tool.ainvoke(kwargs)
            except Exception as exc:  # noqa: BLE001 - any failure of the tool is reported as the tool's
                raise RuntimeError(f"Failed to call LangChain tool {tool.name}: {exc!s}") from exc

        return cls(call_langchain_tool, tool.name, tool.description, args, arg_types, arg_desc)

    # -- text --------------------------------------------------------------------------------------------------
    def format(self) -> str:
        return str(self)

    def format_as_litellm_function_call(self) -> dict[str, Any]:
        """The OpenAI function-calling description of this tool (an argument with a default is optional)."""
        args = self.args or {}
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.desc,
                "parameters": {
                    "type": "object",
                    "properties": self.args,
                    "required": [k for k in args if "default" not in args[k]],
                },
            },
        }

    def __repr__(self) -> str:
        return f"Tool(name={self.name}, desc={self.desc}, args={self.args})"

    def __str__(self) -> str:
        desc = f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ") if self.desc else "."
        return f"{self.name}{desc} It takes arguments {self.args}."

    def __deepcopy__(self, memo: dict[int, Any]) -> Tool:
        """Copies share the function: a tool is a capability the program uses, not state it owns."""
        clone = copy.copy(self)
        clone.args = copy.deepcopy(self.args, memo)
        clone.arg_types = dict(self.arg_types or {})
        clone.arg_desc = copy.deepcopy(self.arg_desc, memo)
        return clone


class ToolCalls(Type):
    # A list of tool calls; accepts ``{"tool_calls": [...]}``, a list of calls, or one call, each as
    # ``{"name", "args"}`` or OpenAI's ``{"function": {"name", "arguments"}}``. No docstrings here: pydantic
    # would put them in the JSON schema the prompt shows, and DSPy's schema has no descriptions.

    class ToolCall(pydantic.BaseModel):
        # One requested call: the tool's name and its arguments; ``id`` is the provider's call id of a native
        # tool call (DSPy's schema, and so the prompt, leaves it out).

        id: str | None = None
        name: str
        args: dict[str, Any]

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
            schema = handler.resolve_ref_schema(super().__get_pydantic_json_schema__(core_schema, handler))
            schema.get("properties", {}).pop("id", None)
            if isinstance(schema.get("required"), list):
                schema["required"] = [name for name in schema["required"] if name != "id"]
            return schema

        def format(self) -> dict[str, Any]:
            return {"name": self.name, "args": self.args}

        def execute(self, functions: dict[str, Any] | list[Tool] | None = None) -> Any:
            """Run the call with the function of that name from ``functions`` (a dict of functions or a list of
            Tools); without ``functions``, the caller's local and global names are searched."""
            func = None
            if functions is None:
                frame = inspect.currentframe()
                caller = frame.f_back if frame is not None else None
                try:
                    if caller is not None:
                        func = caller.f_locals.get(self.name) or caller.f_globals.get(self.name)
                finally:
                    del frame, caller
            elif isinstance(functions, dict):
                func = functions.get(self.name)
            else:
                func = next((tool.func for tool in functions if tool.name == self.name), None)
            if func is None:
                raise ValueError(
                    f"Tool function '{self.name}' not found. Please pass the tool functions to the `execute` method."
                )
            try:
                return func(**(self.args or {}))
            except Exception as exc:
                raise RuntimeError(f"Error executing tool '{self.name}': {exc}") from exc

    tool_calls: list[ToolCall]

    @classmethod
    def from_dict_list(cls, tool_calls_dicts: list[dict[str, Any]]) -> ToolCalls:
        return cls(tool_calls=[cls.ToolCall(**_plain_call(item)) for item in tool_calls_dicts])

    @classmethod
    def description(cls) -> str:
        return (
            "Tool calls must be a JSON object with `tool_calls`, a list of calls. "
            "Each call must include `name` and `args`. "
            'Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}'
        )

    def format(self) -> dict[str, Any]:
        """DSPy's shape: ``{"tool_calls": [{"name", "args"}, ...]}``."""
        return {"tool_calls": [call.format() for call in self.tool_calls]}

    @pydantic.model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if isinstance(data, list) and all(isinstance(item, dict) and _is_call(item) for item in data):
            return {"tool_calls": [_plain_call(item) for item in data]}
        if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
            return {**data, "tool_calls": [_plain_call(item) for item in data["tool_calls"]]}
        if isinstance(data, dict) and _is_call(data):
            return {"tool_calls": [_plain_call(data)]}
        raise ValueError(f"Invalid value for ToolCalls: {data!r}")


def _is_call(item: dict[str, Any]) -> bool:
    return ("name" in item and ("args" in item or "arguments" in item)) or "function" in item


def _plain_call(item: Any) -> Any:
    """``{"id", "name", "args"}`` (DSPy's normalization) from ``{"name", "args"}``, ``{"name", "arguments"}`` or
    OpenAI's ``{"id", "type": "function", "function": {"name", "arguments"}}``: a reply may use any of them and
    ``format()`` writes DSPy's. Arguments given as a JSON string are parsed (and repaired); a value of another
    kind than an object becomes ``{}``. Anything but a dict is left to the model's validation."""
    if not isinstance(item, dict):
        return item
    if "function" in item:
        function = item.get("function") or {}
        if not isinstance(function, dict):
            raise ValueError(f"Invalid function value for ToolCalls: {function!r}")
        name, arguments = function.get("name") or item.get("name"), function.get("arguments", {})
    else:
        name, arguments = item.get("name"), item.get("args", item.get("arguments", {}))
    if isinstance(arguments, str):
        from .json_adapter import repair_json

        arguments = repair_json(arguments) if arguments.strip() else {}
    if not isinstance(arguments, dict):
        arguments = {}
    return {"id": item.get("id") or item.get("call_id"), "name": name, "args": arguments}


def provider_tool_call(call: Any) -> dict[str, Any]:
    """A ``tool_calls`` entry of an LM reply (a dict, or an SDK object) as ``{"id", "name", "args"}``. A
    Responses-API item carries ``call_id`` (the id results refer to) and ``arguments`` at its top level."""

    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    function = get(call, "function") or {}
    arguments = get(function, "arguments") or get(call, "arguments") or {}
    item = {"id": get(call, "call_id") or get(call, "id"), "name": get(function, "name") or get(call, "name")}
    return _plain_call({**item, "arguments": arguments})


def _json_default(value: Any) -> Any:
    """A parameter default in its JSON form (an Enum member as its value), as DSPy writes it into the schema."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)  # a JSON number fits a float and a Decimal argument; pydantic would give a string
    import pydantic_core

    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception:  # noqa: BLE001 - a default with no JSON form stays as it is
        return value


# -- helpers -------------------------------------------------------------------------------------------------------


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The function's resolved annotations; when some cannot be resolved, the ones that are not strings."""
    try:
        return get_type_hints(func)
    except Exception:  # noqa: BLE001 - a forward reference to a name that is not importable
        raw = getattr(func, "__annotations__", {}) or {}
        return {k: v for k, v in raw.items() if not isinstance(v, str)}


def json_schema_for(annotation: Any) -> dict[str, Any]:
    """The JSON schema of one argument type, with ``$ref``s to pydantic models expanded in place."""
    origin = get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, pydantic.BaseModel):
        schema = annotation.model_json_schema()
    else:
        schema = type_adapter(annotation).json_schema()
    return resolve_json_schema_reference(schema)


_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}


def convert_input_schema_to_tool_args(
    schema: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """A tool's ``(args, arg_types, arg_desc)`` from the JSON schema of its input object, as DSPy reads it:
    each property's schema (references expanded), its Python type by JSON type, and its description (``No
    description provided.`` when it has none) with `` (Required)`` for a required argument."""
    args: dict[str, Any] = {}
    arg_types: dict[str, Any] = {}
    arg_desc: dict[str, str] = {}
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        if definitions:
            prop = resolve_json_schema_reference({"$defs": definitions, **prop})
        args[name] = prop
        arg_types[name] = _JSON_TYPES.get(prop.get("type"), Any)
        arg_desc[name] = prop.get("description", "No description provided.") + (
            " (Required)" if name in required else ""
        )
    return args, arg_types, arg_desc


def _first_attribute(obj: Any, names: tuple[str, ...], default: Any = None) -> Any:
    """The first of ``names`` ``obj`` has (mcp's v1 and v2 SDKs name some fields differently)."""
    return next((getattr(obj, name) for name in names if hasattr(obj, name)), default)


def _mcp_result(result: Any, result_mode: str) -> Any:
    texts = [part.text for part in result.content if getattr(part, "type", None) == "text"]
    others = [part for part in result.content if getattr(part, "type", None) != "text"]
    content: Any = texts[0] if len(texts) == 1 else texts
    if _first_attribute(result, ("is_error", "isError"), False):
        raise RuntimeError(f"Failed to call a MCP tool: {content}")
    if result_mode == "structured":
        fields_set = getattr(result, "model_fields_set", set())
        for name in ("structured_content", "structuredContent"):
            if name in fields_set:
                return getattr(result, name)
    return content or others


def resolve_json_schema_reference(schema: dict[str, Any]) -> dict[str, Any]:
    """Expand every ``$ref`` into the definition it names and drop ``$defs``."""
    if "$defs" not in schema and "definitions" not in schema:
        return schema
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def resolve(obj: Any) -> Any:
        if isinstance(obj, dict):
            if "$ref" in obj:
                return resolve(definitions[obj["$ref"].split("/")[-1]])
            return {k: resolve(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [resolve(item) for item in obj]
        return obj

    resolved = resolve(schema)
    resolved.pop("$defs", None)
    resolved.pop("definitions", None)
    return resolved


def _validate_against_schema(key: str, value: Any, schema: dict[str, Any], annotation: Any) -> None:
    """DSPy validates an argument with jsonschema when its schema names a type; so does this, when the
    jsonschema package is there, and otherwise checks the value with pydantic in strict mode."""
    type_str = schema.get("type")
    if type_str is None or type_str == "Any":
        return
    instance = value.model_dump() if hasattr(value, "model_dump") else value
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        try:
            jsonschema.validate(instance=instance, schema=schema)
        except jsonschema.ValidationError as exc:
            raise ValueError(f"Arg {key} is invalid: {exc.message}") from None
        return
    if annotation is Any:
        return
    try:
        type_adapter(annotation).validate_python(value, strict=True)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else str(exc)
        raise ValueError(f"Arg {key} is invalid: {first}") from None


def _async_sync_conversion_allowed() -> bool:
    from .. import settings

    try:
        return bool(settings.get("allow_tool_async_sync_conversion"))
    except (KeyError, TypeError):
        return False


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


ToolCall = ToolCalls.ToolCall

__all__ = ["Tool", "ToolCall", "ToolCalls", "json_schema_for", "resolve_json_schema_reference"]
