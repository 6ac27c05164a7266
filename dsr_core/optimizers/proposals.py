"""The prompt-model signatures optimizers use to propose instructions (DSPy's COPRO texts, unchanged)."""

from __future__ import annotations

from ..signatures import InputField, OutputField, Signature


class BasicGenerateInstruction(Signature):
    """You are an instruction optimizer for large language models. I will give you a ``signature`` of fields (inputs and outputs) in English. Your task is to propose an instruction that will lead a good language model to perform the task well. Don't be afraid to be creative."""  # noqa: E501

    basic_instruction: str = InputField(desc="The initial instructions before optimization")
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")
    proposed_prefix_for_output_field: str = OutputField(
        desc="The string at the end of the prompt, which will help the model start solving the task"
    )


class GenerateInstructionGivenAttempts(Signature):
    """You are an instruction optimizer for large language models. I will give some task instructions I've tried, along with their corresponding validation scores. The instructions are arranged in increasing order based on their scores, where higher scores indicate better quality.

    Your task is to propose a new instruction that will lead a good language model to perform the task even better. Don't be afraid to be creative."""  # noqa: E501

    attempted_instructions: str = InputField()
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")
    proposed_prefix_for_output_field: str = OutputField(
        desc="The string at the end of the prompt, which will help the model start solving the task"
    )


PROPOSAL_SIGNATURES = {"basic": BasicGenerateInstruction, "attempts": GenerateInstructionGivenAttempts}
