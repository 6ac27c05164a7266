"""ProgramOfThought: the LM writes Python, a sandbox runs it, and the LM answers from the code's output.

DSPy's algorithm, signatures and prompts: ``code_generate`` (a ChainOfThought) writes ``generated_code``; the
code runs in a fresh interpreter; on an error ``code_regenerate`` sees the code and the error and writes new
code, up to ``max_iters`` attempts in all; ``generate_output`` (a ChainOfThought) answers the signature's
outputs from the final code and its output. The three predictors are ordinary ones
(``code_generate.predict``, ...), so saving, loading and every optimizer see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..interpreter.protocol import (
    CodeExecutionError,
    CodeInterpreter,
    FinalOutput,
    create_interpreter,
    validate_interpreter,
    validate_interpreter_factory,
)
from ..primitives import Prediction
from ..signatures import InputField, OutputField, ensure_signature, make_signature
from .chain_of_thought import ChainOfThought
from .module import Module

log = logging.getLogger(__name__)

_CODE_BLOCK = re.compile(r"```python[ \n](.*?)[ \n]```?", re.DOTALL)
_LAST_ASSIGNMENT = re.compile(r"^(\w+)\s*=")


class ProgramOfThought(Module):
    """``ProgramOfThought("question -> answer", max_iters=3)``; the code runs in ``PythonInterpreter`` (Deno
    and Pyodide: ``pip install "dsr[code]"``) unless ``interpreter_factory`` (or the setting of that name)
    says otherwise. Call it with the inputs, or with a caller-owned interpreter first: ``pot(interp, question=...)``."""

    def __init__(
        self,
        signature: Any,
        max_iters: int = 3,
        interpreter_factory: Callable[[], CodeInterpreter] | None = None,
    ) -> None:
        if interpreter_factory is not None:
            validate_interpreter_factory(interpreter_factory)
        self.signature = signature = ensure_signature(signature)
        self.max_iters = max_iters
        self.code_generate = ChainOfThought(self._mode_signature("generate"))
        self.code_regenerate = ChainOfThought(self._mode_signature("regenerate"))
        self.generate_output = ChainOfThought(self._mode_signature("answer"))
        self._interpreter_factory = interpreter_factory

    @property
    def input_fields(self) -> dict[str, Any]:
        return self.signature.input_fields

    @property
    def output_fields(self) -> dict[str, Any]:
        return self.signature.output_fields

    # -- the signatures, as DSPy writes them ---------------------------------------------------------------------
    def _mode_fields(self, mode: str) -> dict[str, Any]:
        code_out = OutputField(desc="python code that answers the question")
        extra = {
            "generate": {"generated_code": code_out},
            "regenerate": {
                "previous_code": InputField(desc="previously-generated python code that errored"),
                "error": InputField(desc="error message from previously-generated python code"),
                "generated_code": code_out,
            },
            "answer": {
                "final_generated_code": InputField(desc="python code that answers the question"),
                "code_output": InputField(desc="output of previously-generated python code"),
                **self.signature.output_fields,
            },
        }[mode]
        return {**self.input_fields, **extra}

    def _mode_signature(self, mode: str) -> Any:
        return make_signature(self._mode_fields(mode), self._instruction(mode))

    def _instruction(self, mode: str) -> str:
        fields = make_signature(self._mode_fields(mode))
        mode_inputs = ", ".join(f"`{name}`" for name in fields.input_fields)
        mode_outputs = ", ".join(f"`{name}`" for name in fields.output_fields)
        final_outputs = ", ".join(f"`{name}`" for name in self.output_fields)
        if mode == "generate":
            lines = [
                f"You will be given {mode_inputs} and you will respond with {mode_outputs}.",
                f"Generating executable Python code that programmatically computes the correct {mode_outputs}.",
                "After you're done with the computation and think you have the final output, make sure to submit your output by calling the preloaded function `SUBMIT()`.",
                f'You must structure your output in a dict, like {{"field_a": value_a, ...}}, with the correct value mapping for the field(s): {final_outputs}.',
            ]
        elif mode == "regenerate":
            lines = [
                f"You are given {mode_inputs} due to an error in previous code.",
                "Your task is to correct the error and provide the new `generated_code`.",
            ]
        else:
            lines = [f"Given the final code {mode_inputs}, provide the final {mode_outputs}."]
        return "\n".join(lines)

    # -- code ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _parse_code(code_data: Any) -> tuple[str, str | None]:
        """The code in the reply (a fenced block, else the text), as DSPy extracts it: a trailing assignment
        gets its variable as a last line, so the code's value is what it computed."""
        code = str(code_data.get("generated_code", "")).split("---", 1)[0].split("\n\n\n", 1)[0]
        match = _CODE_BLOCK.search(code)
        block = match.group(1) if match else code
        if not block:
            return code, "Error: Empty code after parsing."
        if "\n" not in block and block.count("=") > 1:
            return code, "Error: Code format is not correct."
        last = _LAST_ASSIGNMENT.match(block.split("\n")[-1].strip())
        if last:
            block += "\n" + last.group(1)
        return block, None

    @staticmethod
    def _outcome(result: Any) -> str:
        return json.dumps(result.output if isinstance(result, FinalOutput) else result)

    def _execute_code(self, code: str, interpreter: CodeInterpreter) -> tuple[str | None, str | None]:
        if not code:
            return None, "Error: Empty code before execution."
        try:
            return self._outcome(interpreter.execute(code)), None
        except (CodeExecutionError, SyntaxError) as err:
            return None, str(err)

    async def _aexecute_code(self, code: str, interpreter: CodeInterpreter) -> tuple[str | None, str | None]:
        if not code:
            return None, "Error: Empty code before execution."
        try:
            return self._outcome(await _aexecute(interpreter, code)), None
        except (CodeExecutionError, SyntaxError) as err:
            return None, str(err)

    # -- the interpreter of one call -------------------------------------------------------------------------------
    def _take(self, interpreter: CodeInterpreter | None) -> tuple[CodeInterpreter, bool]:
        """The call's interpreter, and whether the module made it (and so shuts it down afterwards): a caller's
        own interpreter is used as it is and left running."""
        if interpreter is not None:
            validate_interpreter(interpreter)
            return interpreter, False
        return create_interpreter(self._interpreter_factory), True

    @contextlib.contextmanager
    def _interpreter(self, interpreter: CodeInterpreter | None) -> Iterator[CodeInterpreter]:
        active, owned = self._take(interpreter)
        try:
            yield active
        finally:
            if owned:
                active.shutdown()

    @contextlib.asynccontextmanager
    async def _ainterpreter(self, interpreter: CodeInterpreter | None) -> AsyncIterator[CodeInterpreter]:
        active, owned = self._take(interpreter)
        try:
            yield active
        finally:
            if owned:
                await _ashutdown(active)

    def _refuse_interpreter_keyword(self, kwargs: dict[str, Any]) -> None:
        if "interpreter" in kwargs and "interpreter" not in self.input_fields:
            raise TypeError(
                "To use a caller-owned interpreter, pass it as the first positional argument when calling the module."
            )

    def _inputs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self._refuse_interpreter_keyword(kwargs)
        return {name: kwargs[name] for name in self.input_fields if name in kwargs}

    # -- the loop ----------------------------------------------------------------------------------------------------
    def forward(self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any) -> Prediction:  # type: ignore[override]
        inputs = self._inputs(kwargs)
        with self._interpreter(interpreter) as active:
            code, error = self._parse_code(self.code_generate(**inputs))
            output = None
            if not error:
                output, error = self._execute_code(code, active)
            hop = 1
            while error is not None:
                log.error("Error in code execution: %s", error)
                if hop == self.max_iters:
                    raise RuntimeError(f"Max hops reached. Failed to run ProgramOfThought: {error}")
                inputs.update(previous_code=code, error=error)
                code, error = self._parse_code(self.code_regenerate(**inputs))
                if not error:
                    output, error = self._execute_code(code, active)
                hop += 1
            inputs.update(final_generated_code=code, code_output=output)
            return self.generate_output(**inputs)

    async def aforward(self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any) -> Prediction:  # type: ignore[override]
        inputs = self._inputs(kwargs)
        async with self._ainterpreter(interpreter) as active:
            code, error = self._parse_code(await self.code_generate.acall(**inputs))
            output = None
            if not error:
                output, error = await self._aexecute_code(code, active)
            hop = 1
            while error is not None:
                log.error("Error in code execution: %s", error)
                if hop == self.max_iters:
                    raise RuntimeError(f"Max hops reached. Failed to run ProgramOfThought: {error}")
                inputs.update(previous_code=code, error=error)
                code, error = self._parse_code(await self.code_regenerate.acall(**inputs))
                if not error:
                    output, error = await self._aexecute_code(code, active)
                hop += 1
            inputs.update(final_generated_code=code, code_output=output)
            return await self.generate_output.acall(**inputs)

    def __repr__(self) -> str:
        return f"ProgramOfThought({self.signature.signature!r}, max_iters={self.max_iters})"


async def _aexecute(interpreter: Any, code: str) -> Any:
    """An interpreter's ``aexecute`` when it has one, else its ``execute`` in a worker thread: never on the loop."""
    if hasattr(interpreter, "aexecute"):
        return await interpreter.aexecute(code)
    return await asyncio.to_thread(interpreter.execute, code)


async def _ashutdown(interpreter: Any) -> None:
    if hasattr(interpreter, "ashutdown"):
        await interpreter.ashutdown()
    else:
        await asyncio.to_thread(interpreter.shutdown)


__all__ = ["ProgramOfThought"]
