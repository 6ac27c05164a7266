"""ReAct: an agent loop over tools, with DSPy's signatures, prompts and trajectory.

Each step, the ``react`` predictor sees the inputs and the trajectory so far and answers with
``next_thought``, ``next_tool_name`` (one of the tools, or ``finish``) and ``next_tool_args``; the tool's
result (or its error) is the step's observation. After ``finish`` or ``max_iters`` steps, ``extract`` (a
ChainOfThought over the inputs and the trajectory) produces the signature's outputs. Both are ordinary
predictors (``react`` and ``extract.predict``), so saving, loading and every optimizer see them.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .. import settings as _settings
from ..adapters import ChatAdapter
from ..errors import ContextWindowExceededError
from ..primitives import Prediction, Usage
from ..signatures import InputField, OutputField, Signature, ensure_signature, make_signature
from .chain_of_thought import ChainOfThought
from .module import Module
from .predict import Predict

if TYPE_CHECKING:
    from ..adapters.tool import Tool

log = logging.getLogger(__name__)

TRUNCATION_ATTEMPTS = 3


class ReAct(Module):
    """``ReAct("question -> answer", tools=[search, lookup], max_iters=10)``.

    ``tools`` are functions (their name, docstring and typed arguments describe them to the LM), callable
    objects or ``Tool`` instances. Call it with the signature's inputs; ``max_iters=`` overrides per call.
    The prediction carries the outputs and the ``trajectory`` dict (``thought_0``, ``tool_name_0``,
    ``tool_args_0``, ``observation_0``, ...).
    """

    def __init__(self, signature: Any, tools: Sequence[Callable[..., Any] | Tool], max_iters: int = 10) -> None:
        from ..adapters.tool import Tool  # imported here: its pydantic models are not needed to import dsr_core

        self.signature = signature = ensure_signature(signature)
        self.max_iters = max_iters

        wrapped = [t if isinstance(t, Tool) else Tool(t) for t in tools]
        by_name: dict[str, Tool] = {tool.name or "": tool for tool in wrapped}

        inputs = ", ".join(f"`{k}`" for k in signature.input_fields)
        outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
        instr = [f"{signature.instructions}\n"] if signature.instructions else []
        instr.extend(
            [
                f"You are an Agent. In each episode, you will be given the fields {inputs} as input. And you can see your past trajectory so far.",
                f"Your goal is to use one or more of the supplied tools to collect any necessary information for producing {outputs}.\n",
                "To do this, you will interleave next_thought, next_tool_name, and next_tool_args in each turn, and also when finishing the task.",
                "After each tool call, you receive a resulting observation, which gets appended to your trajectory.\n",
                "When writing next_thought, you may reason about the current situation and plan for future steps.",
                "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n",
            ]
        )
        by_name["finish"] = Tool(
            func=_finish,
            name="finish",
            desc=f"Marks the task as complete. That is, signals that all information for producing the outputs, i.e. {outputs}, are now available to be extracted.",
            args={},
        )
        for idx, tool in enumerate(by_name.values()):
            instr.append(f"({idx + 1}) {tool}")
        instr.append("When providing `next_tool_args`, the value inside the field must be in JSON format")

        react_signature = make_signature(
            {
                **signature.input_fields,
                "trajectory": (str, InputField()),
                "next_thought": (str, OutputField()),
                "next_tool_name": (Literal[tuple(by_name)], OutputField()),  # type: ignore[valid-type]
                "next_tool_args": (dict[str, Any], OutputField()),
            },
            "\n".join(instr),
        )
        fallback_signature = make_signature(
            {**signature.input_fields, **signature.output_fields}, signature.instructions
        ).append("trajectory", InputField(), type_=str)

        self.tools = by_name
        self.react = Predict(react_signature)
        self.extract = ChainOfThought(fallback_signature)

    # -- the loop ----------------------------------------------------------------------------------------------
    async def aforward(self, **input_args: Any) -> Prediction:  # type: ignore[override]
        trajectory: dict[str, Any] = {}
        usage = Usage()
        max_iters = input_args.pop("max_iters", self.max_iters)
        for idx in range(max_iters):
            try:
                pred = await self._async_call_with_potential_trajectory_truncation(self.react, trajectory, **input_args)
            except (ValueError, ContextWindowExceededError) as err:
                log.warning("Ending the trajectory: Agent failed to select a valid tool: %s", _fmt_exc(err))
                break
            usage.add(pred.usage)
            self._record_step(trajectory, idx, pred)
            try:
                observation = await self.tools[pred.next_tool_name].acall(**pred.next_tool_args)
            except Exception as err:  # noqa: BLE001 - a failing tool is an observation, as in DSPy
                observation = f"Execution error in {pred.next_tool_name}: {_fmt_exc(err)}"
            trajectory[f"observation_{idx}"] = observation
            if pred.next_tool_name == "finish":
                break
        extract = await self._async_call_with_potential_trajectory_truncation(self.extract, trajectory, **input_args)
        return self._result(trajectory, extract, usage)

    def forward(self, **input_args: Any) -> Prediction:  # type: ignore[override]
        """The same loop, synchronously: tools run in the calling thread, as a DSPy program expects."""
        trajectory: dict[str, Any] = {}
        usage = Usage()
        max_iters = input_args.pop("max_iters", self.max_iters)
        for idx in range(max_iters):
            try:
                pred = self._call_with_potential_trajectory_truncation(self.react, trajectory, **input_args)
            except (ValueError, ContextWindowExceededError) as err:
                log.warning("Ending the trajectory: Agent failed to select a valid tool: %s", _fmt_exc(err))
                break
            usage.add(pred.usage)
            self._record_step(trajectory, idx, pred)
            try:
                observation = self.tools[pred.next_tool_name](**pred.next_tool_args)
            except Exception as err:  # noqa: BLE001 - a failing tool is an observation, as in DSPy
                observation = f"Execution error in {pred.next_tool_name}: {_fmt_exc(err)}"
            trajectory[f"observation_{idx}"] = observation
            if pred.next_tool_name == "finish":
                break
        extract = self._call_with_potential_trajectory_truncation(self.extract, trajectory, **input_args)
        return self._result(trajectory, extract, usage)

    @staticmethod
    def _record_step(trajectory: dict[str, Any], idx: int, pred: Prediction) -> None:
        trajectory[f"thought_{idx}"] = pred.next_thought
        trajectory[f"tool_name_{idx}"] = pred.next_tool_name
        trajectory[f"tool_args_{idx}"] = pred.next_tool_args

    @staticmethod
    def _result(trajectory: dict[str, Any], extract: Prediction, usage: Usage) -> Prediction:
        result = Prediction(trajectory=trajectory, **extract)
        result.usage = usage + extract.usage
        return result

    # -- trajectory ----------------------------------------------------------------------------------------------
    def _format_trajectory(self, trajectory: dict[str, Any]) -> str:
        """The trajectory as the adapter formats input fields: ``[[ ## thought_0 ## ]]`` sections."""
        if not trajectory:
            return ""
        adapter = _settings.get("adapter") or ChatAdapter()
        trajectory_signature = Signature(f"{', '.join(trajectory)} -> x")
        return adapter.format_user_message_content(trajectory_signature, trajectory)

    async def _async_call_with_potential_trajectory_truncation(
        self, module: Any, trajectory: dict[str, Any], **input_args: Any
    ) -> Prediction:
        last: ContextWindowExceededError | None = None
        for _ in range(TRUNCATION_ATTEMPTS):
            try:
                return await module.acall(**input_args, trajectory=self._format_trajectory(trajectory))
            except ContextWindowExceededError as err:
                log.warning("Trajectory exceeded the context window, truncating the oldest tool call information.")
                last = err
                trajectory = self.truncate_trajectory(trajectory)
        raise _exhausted(last)

    def _call_with_potential_trajectory_truncation(
        self, module: Any, trajectory: dict[str, Any], **input_args: Any
    ) -> Prediction:
        last: ContextWindowExceededError | None = None
        for _ in range(TRUNCATION_ATTEMPTS):
            try:
                return module(**input_args, trajectory=self._format_trajectory(trajectory))
            except ContextWindowExceededError as err:
                log.warning("Trajectory exceeded the context window, truncating the oldest tool call information.")
                last = err
                trajectory = self.truncate_trajectory(trajectory)
        raise _exhausted(last)

    def truncate_trajectory(self, trajectory: dict[str, Any]) -> dict[str, Any]:
        """Drop the oldest tool call (its four entries) so the prompt fits; override for other policies."""
        keys = list(trajectory)
        if len(keys) <= 4:
            raise ContextWindowExceededError(
                "The trajectory is too long so your prompt exceeded the context window, but the trajectory cannot be "
                "truncated because it only has one tool call."
            )
        for key in keys[:4]:
            trajectory.pop(key)
        return trajectory

    def __repr__(self) -> str:
        return f"ReAct({self.signature.signature!r}, tools={list(self.tools)})"


def _finish() -> str:
    return "Completed."


def _exhausted(last: ContextWindowExceededError | None) -> ContextWindowExceededError:
    error = ContextWindowExceededError(
        f"The prompt exceeded the context window even after {TRUNCATION_ATTEMPTS} attempts of truncating the trajectory"
    )
    error.__cause__ = last
    return error


def _fmt_exc(err: BaseException, *, limit: int = 5) -> str:
    """The traceback as one string (the innermost ``limit`` frames), as DSPy puts it in the trajectory."""
    return "\n" + "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=limit)).strip()


__all__ = ["ReAct"]
