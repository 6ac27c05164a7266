"""The prompt-model signatures optimizers use to propose instructions: DSPy's texts, unchanged.

COPRO's two signatures, and MIPROv2's grounded proposer: the dataset summary (DatasetDescriptor, refined
batch by batch, then ObservationSummarizer), the program and module describers, and
GenerateSingleModuleInstruction in each of the variants MIPROv2 uses (with or without the dataset summary,
the program description and a tip; MIPROv2 never shows instruction history). Typos are DSPy's: the prompts
are the same bytes DSPy sends. GEPA's reflection prompt is gepa's template text recast as a signature (its
two placeholders become input fields, its fenced reply an output field). SIMBA's OfferFeedback asks for advice
per module from a better and a worse trajectory. ``PROPOSAL_SIGNATURES`` is the registry work items name them by.
"""

from __future__ import annotations

import itertools
import re

from ..graph.proposals import ProposeSplit, RankEdits
from ..signatures import Field, InputField, OutputField, Signature, make_signature


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


# -- MIPROv2: the dataset summary (dspy/propose/dataset_summary_generator.py) ----------------------------------


class ObservationSummarizer(Signature):
    """Given a series of observations I have made about my dataset, please summarize them into a brief 2-3 sentence summary which highlights only the most important details."""  # noqa: E501

    observations: str = InputField(desc="Observations I have made about my dataset")
    summary: str = OutputField(
        desc="Two to Three sentence summary of only the most significant highlights of my observations"
    )


class DatasetDescriptor(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. Some areas you may consider in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""  # noqa: E501

    examples: str = InputField(desc="Sample data points from the dataset")
    observations: str = OutputField(desc="Somethings that holds true for most or all of the data you observed")


class DatasetDescriptorWithPriorObservations(Signature):
    """Given several examples from a dataset please write observations about trends that hold for most or all of the samples. I will also provide you with a few observations I have already made.  Please add your own observations or if you feel the observations are comprehensive say 'COMPLETE' Some areas you may consider in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated guess as to the nature of the task this dataset will enable. Don't be afraid to be creative"""  # noqa: E501

    examples: str = InputField(desc="Sample data points from the dataset")
    prior_observations: str = InputField(desc="Some prior observations I made about the data")
    observations: str = OutputField(
        desc="Somethings that holds true for most or all of the data you observed or COMPLETE if you have nothing to add"
    )


# -- MIPROv2: the grounded proposer (dspy/propose/grounded_proposer.py) ----------------------------------------

TIPS = {
    "none": "",
    "creative": "Don't be afraid to be creative when creating the new instruction!",
    "simple": "Keep the instruction clear and concise.",
    "description": "Make sure your instruction is very informative and descriptive.",
    "high_stakes": "The instruction should include a high stakes scenario in which the LM must solve the task!",
    "persona": 'Include a persona that is relevant to the task in the instruction (ie. "You are a ...")',
}


class DescribeProgram(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe what type of task this program appears to be designed to solve, and how it appears to work."""  # noqa: E501

    program_code: str = InputField(
        desc="Pseudocode for a language model program designed to solve a particular task.", prefix="PROGRAM CODE:"
    )
    program_example: str = InputField(desc="An example of the program in use.", prefix="EXAMPLE OF PROGRAM IN USE:")
    program_description: str = OutputField(
        desc="Describe what task the program is designed to solve, and how it goes about solving this task.",
        prefix="SUMMARY OF PROGRAM ABOVE:",
    )


class DescribeModule(Signature):
    """Below is some pseudo-code for a pipeline that solves tasks with calls to language models. Please describe the purpose of one of the specified module in this pipeline."""  # noqa: E501

    program_code: str = InputField(
        desc="Pseudocode for a language model program designed to solve a particular task.", prefix="PROGRAM CODE:"
    )
    program_example: str = InputField(desc="An example of the program in use.", prefix="EXAMPLE OF PROGRAM IN USE:")
    program_description: str = InputField(
        desc="Summary of the task the program is designed to solve, and how it goes about solving it.",
        prefix="SUMMARY OF PROGRAM ABOVE:",
    )
    module: str = InputField(desc="The module in the program that we want to describe.", prefix="MODULE:")
    module_description: str = OutputField(
        desc="Description of the module's role in the broader program.", prefix="MODULE DESCRIPTION:"
    )


_GENERATE_INSTRUCTION = "Use the information below to learn about a task that we are trying to solve using calls to an LM, then generate a new instruction that will be used to prompt a Language Model to better solve the task."  # noqa: E501


def generate_instruction_class(*, use_dataset_summary: bool, program_aware: bool, use_tip: bool) -> type[Signature]:
    """DSPy's GenerateSingleModuleInstruction with the optional fields it is built with."""
    fields: dict[str, Field] = {}
    if use_dataset_summary:
        fields["dataset_description"] = InputField(
            desc="A description of the dataset that we are using.", prefix="DATASET SUMMARY:"
        )
    if program_aware:
        fields["program_code"] = InputField(
            desc="Language model program designed to solve a particular task.", prefix="PROGRAM CODE:"
        )
        fields["program_description"] = InputField(
            desc="Summary of the task the program is designed to solve, and how it goes about solving it.",
            prefix="PROGRAM DESCRIPTION:",
        )
        fields["module"] = InputField(desc="The module to create an instruction for.", prefix="MODULE:")
        fields["module_description"] = InputField(
            desc="Description of the module to create an instruction for.", prefix="MODULE DESCRIPTION:"
        )
    fields["task_demos"] = InputField(desc="Example inputs/outputs of our module.", prefix="TASK DEMO(S):")
    fields["basic_instruction"] = InputField(desc="Basic instruction.", prefix="BASIC INSTRUCTION:")
    if use_tip:
        fields["tip"] = InputField(
            desc="A suggestion for how to go about generating the new instruction.", prefix="TIP:"
        )
    fields["proposed_instruction"] = OutputField(
        desc="Propose an instruction that will be used to prompt a Language Model to perform this task.",
        prefix="PROPOSED INSTRUCTION:",
    )
    return make_signature(fields, _GENERATE_INSTRUCTION, name="GenerateSingleModuleInstruction")


def instruction_signature_key(*, use_dataset_summary: bool, program_aware: bool, use_tip: bool) -> str:
    """The registry key of a GenerateSingleModuleInstruction variant, e.g. ``instruction+data+tip``."""
    flags = [("data", use_dataset_summary), ("program", program_aware), ("tip", use_tip)]
    return "instruction" + "".join(f"+{name}" for name, on in flags if on)


def strip_prefix(text: str) -> str:
    """DSPy's cleanup of a proposal: drop a leading ``Some Label:`` (up to five words) and outer quotes."""
    return re.sub(r"^[\*\s]*(([\w\'\-]+\s+){0,4}[\w\'\-]+):\s*", "", text).strip('"')


# -- GEPA: reflection on traces and feedback (gepa's InstructionProposalSignature, as a signature) ----------------


class ProposeInstructionFromFeedback(Signature):
    """I provided an assistant with the current instruction to perform a task for me. The examples with feedback are different task inputs provided to the assistant along with the assistant's response for each of them, and some feedback on how the assistant's response could be better.

    Your task is to write a new instruction for the assistant.

    Read the inputs carefully and identify the input format and infer detailed task description about the task I wish to solve with the assistant.

    Read all the assistant responses and the corresponding feedback. Identify all niche and domain specific factual information about the task and include it in the instruction, as a lot of it may not be available to the assistant in the future. The assistant may have utilized a generalizable strategy to solve the task, if so, include that in the instruction as well."""  # noqa: E501

    current_instruction: str = InputField(desc="The instruction the assistant was given")
    examples_with_feedback: str = InputField(desc="Task inputs, the assistant's outputs, and feedback on each")
    new_instruction: str = OutputField(desc="The new instruction for the assistant")


# -- SIMBA: advice from contrasting a better and a worse trajectory (dspy/teleprompt/simba_utils.py) ------------


class OfferFeedback(Signature):
    """
    You will be given two trajectories of an LLM-driven program's execution. Your goal is to help the program's modules
    build up experience on how to maximize the reward value assigned to the program's outputs if it were to receive
    similar inputs in the future.

    The module won't see its own history. It will rely on your advice balancing being concrete and being generalizable.

    In your advice:
    - Avoid boilerplate. Offer advice that would change the module's behavior for the better in the future.
    - Ensure that advice offered to a module M is specific to that M's specific sub-task, not the overall program.
    - Rely on contrasting the behavior of the worse trajectory against the better trajectory in making recommendations.
    - Ensure each unique module name appears exactly once as a key in the advice dictionary.
    """  # noqa: E501

    program_code: str = InputField(desc="The code of the program that we are analyzing")
    modules_defn: str = InputField(desc="The definition of each module in the program, including its I/O")
    program_inputs: str = InputField(desc="The inputs to the program that we are analyzing")
    oracle_metadata: str = InputField(desc="Any (hidden) metadata about the training set instance we're analyzing")
    worse_program_trajectory: str = InputField(
        desc="The trajectory of the program's execution, showing each module's I/O"
    )
    worse_program_outputs: str = InputField(desc="The outputs of the program that we are analyzing")
    worse_reward_value: float = InputField(desc="The reward value assigned to the program's outputs")
    worse_reward_info: str = InputField(
        desc="Additional information that might be helpful to understanding the assigned reward value."
    )
    better_program_trajectory: str = InputField(
        desc="The trajectory of the program's execution, showing each module's I/O"
    )
    better_program_outputs: str = InputField(desc="The outputs of the program that we are analyzing")
    better_reward_value: float = InputField(desc="The reward value assigned to the program's outputs")
    better_reward_info: str = InputField(
        desc="Additional information that might be helpful to understanding the assigned reward value."
    )
    module_names: list[str] = InputField(desc="The names of the modules in the program, for which we seek advice")
    discussion: str = OutputField(desc="Discussing blame of where each module went wrong, if it did")
    module_advice: dict[str, str] = OutputField(
        desc="For each module, describe very concretely: If the module receives ${description of input or patterns "
        "therein}, then it should ${description of content, behavior, or strategies to adopt and/or others to avoid}. "
        "Basically, your advice be such that if the module has access to your tip, it would be much more likely to act "
        "like the successful trajectory rather than the lower-scoring trajectory."
    )


PROPOSAL_SIGNATURES: dict[str, type[Signature]] = {
    "reflection": ProposeInstructionFromFeedback,
    "offer_feedback": OfferFeedback,
    "basic": BasicGenerateInstruction,
    "attempts": GenerateInstructionGivenAttempts,
    "dataset_descriptor": DatasetDescriptor,
    "dataset_descriptor_with_prior": DatasetDescriptorWithPriorObservations,
    "observation_summarizer": ObservationSummarizer,
    "describe_program": DescribeProgram,
    "describe_module": DescribeModule,
    "propose_split": ProposeSplit,
    "rank_edits": RankEdits,
    **{
        instruction_signature_key(use_dataset_summary=data, program_aware=program, use_tip=tip): (
            generate_instruction_class(use_dataset_summary=data, program_aware=program, use_tip=tip)
        )
        for data, program, tip in itertools.product((False, True), repeat=3)
    },
}
