"""CodeAct: an agent whose actions are Python code, run in a sandbox where the tools are defined.

DSPy's algorithm and prompts: the tools' source is run in the interpreter first, so the code calls them as
ordinary functions inside the sandbox (they must be plain functions, whose source ``inspect`` can read). Each
step, ``codeact`` sees the inputs and the trajectory and answers ``generated_code`` and ``finished``; the code
runs, and its output or error joins the trajectory. After ``finished`` or ``max_iters`` steps, ``extractor``
(a ChainOfThought) answers the signature's outputs from the trajectory.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from ..interpreter.protocol import CodeInterpreter, validate_interpreter_factory
from ..primitives import Prediction
from ..signatures import InputField, OutputField, ensure_signature, make_signature
from .chain_of_thought import ChainOfThought
from .predict import Predict
from .program_of_thought import ProgramOfThought, _aexecute
from .react import ReAct


class CodeAct(ReAct, ProgramOfThought):
    """``CodeAct("n -> factorial", tools=[factorial], max_iters=5)``: ``tools`` are plain functions (or ``Tool``s
    wrapping them); their docstrings and typed arguments describe them to the LM."""

    def __init__(  # noqa: D107 - ReAct's and ProgramOfThought's constructors are not called, as in DSPy
        self,
        signature: Any,
        tools: Sequence[Callable[..., Any] | Any],
        max_iters: int = 5,
        interpreter_factory: Callable[[], CodeInterpreter] | None = None,
    ) -> None:
        from ..adapters.tool import Tool

        if interpreter_factory is not None:
            validate_interpreter_factory(interpreter_factory)
        self.signature = signature = ensure_signature(signature)
        self.max_iters = max_iters
        self.history = []

        wrapped = [t if isinstance(t, Tool) else Tool(t) for t in tools]
        if any(not inspect.isfunction(tool.func) for tool in wrapped):
            raise ValueError("CodeAct only accepts functions and not callable objects.")
        self.tools: dict[str, Any] = {tool.name: tool for tool in wrapped}

        codeact_signature = make_signature(
            {
                **signature.input_fields,
                "trajectory": (str, InputField()),
                "generated_code": (
                    str,
                    OutputField(
                        desc="Python code that when executed, produces output relevant to answering the question"
                    ),
                ),
                "finished": (bool, OutputField(desc="a boolean flag to determine if the process is done")),
            },
            "\n".join(self._build_instructions(signature, self.tools)),
        )
        extract_signature = make_signature(
            {**signature.input_fields, **signature.output_fields}, signature.instructions
        ).append("trajectory", InputField(), type_=str)

        self.codeact = Predict(codeact_signature)
        self.extractor = ChainOfThought(extract_signature)
        self._interpreter_factory = interpreter_factory

    @staticmethod
    def _build_instructions(signature: Any, tools: dict[str, Any]) -> list[str]:
        instructions = [f"{signature.instructions}\n"] if signature.instructions else []
        inputs = ", ".join(f"`{k}`" for k in signature.input_fields)
        outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
        instructions.append(
            f"You are an intelligent agent. For each episode, you will receive the fields {inputs} as input.\n"
            f"Your goal is to generate executable Python code that collects any necessary information for producing {outputs}.\n"
            "For each iteration, you will generate a code snippet that either solves the task or progresses towards the solution.\n"
            "Ensure any output you wish to extract from the code is printed to the console. The code should be enclosed in a fenced code block.\n"
            f"When all information for producing the outputs ({outputs}) are available to be extracted, mark `finished=True` besides the final Python code.\n"
            "You have access to the Python Standard Library and the following functions:"
        )
        instructions.extend(f"({idx + 1}) {tool}" for idx, tool in enumerate(tools.values()))
        return instructions

    def _step(self, trajectory: dict[str, Any], idx: int, code_data: Any) -> str | None:
        """Record a step's code, or why it could not be parsed; the code to run, if any."""
        code, error = self._parse_code(code_data)
        if error:
            trajectory[f"observation_{idx}"] = f"Failed to parse the generated code: {error}"
            return None
        trajectory[f"generated_code_{idx}"] = code
        return code

    @staticmethod
    def _observe(trajectory: dict[str, Any], idx: int, output: str | None, error: str | None) -> None:
        if not error:
            trajectory[f"code_output_{idx}"] = output
        else:
            trajectory[f"observation_{idx}"] = f"Failed to execute the generated code: {error}"

    def forward(self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any) -> Prediction:  # type: ignore[override]
        self._refuse_interpreter_keyword(kwargs)
        with self._interpreter(interpreter) as active:
            for tool in self.tools.values():
                active.execute(_source(tool.func))
            trajectory: dict[str, Any] = {}
            max_iters = kwargs.pop("max_iters", self.max_iters)
            for idx in range(max_iters):
                code_data = self.codeact(trajectory=trajectory, **kwargs)
                code = self._step(trajectory, idx, code_data)
                if code is None:
                    continue
                self._observe(trajectory, idx, *self._execute_code(code, active))
                if code_data.finished:
                    break
            extract = self._call_with_potential_trajectory_truncation(self.extractor, trajectory, **kwargs)
            return Prediction(trajectory=trajectory, **extract)

    async def aforward(self, interpreter: CodeInterpreter | None = None, /, **kwargs: Any) -> Prediction:  # type: ignore[override]
        self._refuse_interpreter_keyword(kwargs)
        async with self._ainterpreter(interpreter) as active:
            for tool in self.tools.values():
                await _aexecute(active, _source(tool.func))
            trajectory: dict[str, Any] = {}
            max_iters = kwargs.pop("max_iters", self.max_iters)
            for idx in range(max_iters):
                code_data = await self.codeact.acall(trajectory=trajectory, **kwargs)
                code = self._step(trajectory, idx, code_data)
                if code is None:
                    continue
                self._observe(trajectory, idx, *await self._aexecute_code(code, active))
                if code_data.finished:
                    break
            extract = await self._async_call_with_potential_trajectory_truncation(self.extractor, trajectory, **kwargs)
            return Prediction(trajectory=trajectory, **extract)

    def __repr__(self) -> str:
        return f"CodeAct({self.signature.signature!r}, tools={list(self.tools)})"


def _source(function: Callable[..., Any]) -> str:
    """A tool's definition to run in the sandbox; dedented, so a function defined inside another still runs."""
    return textwrap.dedent(inspect.getsource(function))


__all__ = ["CodeAct"]
