"""MIPROv2's grounded instruction proposer (DSPy's ``GroundedProposer``), as prompt-model work and its outcomes.

The dataset summary: DatasetDescriptor over the first ``view_data_batch_size`` training examples, refined
batch by batch (at most ten batches, until five answers of COMPLETE), then summarized. For every predictor
and demo set: a description of the program (from its source code, read at ``init_state``), then of the
module, then an instruction from all of it, the set's bootstrapped demos and a random tip (DSPy's TIPS).
Every prompt-model call is a GenerateWork whose key names its step and, for a proposal, its number.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...modules.module import Module
from ...primitives import Example
from ..base import GenerateOutcome, GenerateWork, WorkKey
from ..proposals import TIPS, instruction_signature_key, strip_prefix
from .state import NO_TASK_DEMOS, DatasetSummary, MiproState, Proposal

BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT = 3  # demos per set when optimizing zero-shot; demos shown to the proposer
MAX_SUMMARY_BATCHES = 10  # DatasetDescriptor, then at most nine refinements
MAX_COMPLETE_SKIPS = 5  # refinements that answered COMPLETE before the summary stops looking

# the steps of the proposer's requests (the keys of its GenerateWork)
DESCRIBE_DATA = "describe_data"  # number: the batch of training examples described
SUMMARIZE_DATA = "summarize_data"
DESCRIBE_PROGRAM = "describe_program"  # number: the proposal it is for, as for the next two
DESCRIBE_MODULE = "describe_module"
INSTRUCTION = "instruction"


def program_source(program: Module) -> str:
    """What the proposer is shown as the program's code, as DSPy's ``get_dspy_source_code`` gathers it: each
    predictor's signature (its source, or its repr when it was built from a string), the classes of the
    modules the user wrote, the program's own class last. Sources that cannot be read are left out."""

    def source(obj: Any) -> str:
        try:
            return inspect.getsource(obj).strip()
        except (OSError, TypeError):
            return ""

    parts: list[str] = []
    for _, predictor in program.named_predictors():
        parts.append(source(predictor.signature) or repr(predictor.signature))
    modules = [module for _, module in program.named_sub_modules()]
    for module in modules[1:] + modules[:1]:
        if not type(module).__module__.startswith("dsr_core."):  # Predict, ChainOfThought: DSPy leaves them out
            parts.append(source(type(module)))
    return "\n\n".join(dict.fromkeys(part for part in parts if part))


def module_names(program: Module) -> list[str]:
    """Per predictor, as DSPy names it to the proposer: ``Predict(question) -> answer``."""
    return [
        f"{type(p).__name__}({', '.join(p.signature.input_fields)}) -> {', '.join(p.signature.output_fields)}"
        for p in program.predictors()
    ]


def render_examples(examples: Sequence[Example]) -> str:
    """A list of examples as DSPy shows them to the dataset describer: ``Example({...}) (input_keys={...})``,
    input keys sorted."""

    def one(example: Example) -> str:
        store = {k: v for k, v in example.items() if not k.startswith("dspy_")}
        keys = example.input_keys
        if keys is None:
            shown = "None"
        elif keys:
            shown = "{" + ", ".join(sorted(repr(key) for key in keys)) + "}"
        else:
            shown = "set()"  # an empty Python set
        return f"Example({store!r}) (input_keys={shown})"

    return "[" + ", ".join(one(example) for example in examples) + "]"


def dataset_summary(train: Sequence[Example], batch_size: int) -> DatasetSummary:
    """The summary to build: the first ``MAX_SUMMARY_BATCHES`` batches of training examples, rendered."""
    starts = [0, *range(batch_size, len(train), batch_size)][:MAX_SUMMARY_BATCHES]
    return DatasetSummary(batches=[render_examples(train[b : b + batch_size]) for b in starts])


def _completion(outcome: GenerateOutcome, field: str) -> str | None:
    """The field of the first completion, or None if the request failed."""
    if outcome.error is not None or not outcome.completions or outcome.completions[0].get(field) is None:
        return None
    return str(outcome.completions[0][field])


@dataclass(frozen=True)
class GroundedProposer:
    """The proposer's settings: the temperature of its requests and which grounding it uses (the program's
    code is grounding when the state has it, the dataset summary when the state has one)."""

    temperature: float
    tip_aware: bool = True
    fewshot_aware: bool = True

    def plan(self, num_predictors: int, per_predictor: int, rng: random.Random) -> list[Proposal]:
        """DSPy's proposal loop: per predictor and demo set, a random tip and a rollout id."""
        proposals = []
        for predictor in range(num_predictors):
            for demo_set in range(per_predictor):
                tip = TIPS[rng.choice(list(TIPS))] if self.tip_aware else ""
                rollout = str(rng.randint(0, 10**9))
                if demo_set > 0:  # the first would be replaced by the original instruction
                    proposals.append(Proposal(predictor=predictor, demo_set=demo_set, tip=tip or None, rollout=rollout))
        return proposals

    # -- ask ---------------------------------------------------------------------------------------------------
    def work(self, state: MiproState) -> list[GenerateWork]:
        """The summary's next call (while it is made) and, in the propose phase, each proposal's next call."""
        work = []
        if state.summary is not None and not state.summary.done:
            work.append(self.summary_work(state.summary))
        if state.phase == "propose":
            for number, proposal in enumerate(state.proposals):
                item = self._proposal_work(state, number, proposal)
                if item is not None:
                    work.append(item)
        return work

    @staticmethod
    def summary_work(summary: DatasetSummary) -> GenerateWork:
        """The summary's next call: describe the first batch, refine with the next one, or summarize."""
        if summary.shown == 0:
            key, signature = WorkKey(step=DESCRIBE_DATA, number=0), "dataset_descriptor"
            inputs = {"examples": summary.batches[0]}
        elif summary.refining:
            key, signature = WorkKey(step=DESCRIBE_DATA, number=summary.shown), "dataset_descriptor_with_prior"
            inputs = {"examples": summary.batches[summary.shown], "prior_observations": summary.observations}
        else:
            key, signature = WorkKey(step=SUMMARIZE_DATA), "observation_summarizer"
            inputs = {"observations": summary.observations}
        return GenerateWork(key=key, signature=signature, inputs=inputs, temperature=1.0)

    def _proposal_work(self, state: MiproState, number: int, proposal: Proposal) -> GenerateWork | None:
        """The proposal's next call: describe the program, then the module, then propose an instruction."""

        def generate(step: str, signature: str, inputs: dict[str, Any]) -> GenerateWork:
            return GenerateWork(
                key=WorkKey(step=step, number=number),
                signature=signature,
                inputs=inputs,
                temperature=self.temperature,
                rollout=proposal.rollout,
            )

        program_aware = bool(state.program_code)
        described = {"program_code": state.program_code, "program_example": proposal.task_demos}
        if program_aware and proposal.program_description is None:
            return generate(DESCRIBE_PROGRAM, "describe_program", described)
        if program_aware and proposal.module_description is None:
            inputs = {**described, "program_description": proposal.program_description, "module": proposal.module}
            return generate(DESCRIBE_MODULE, "describe_module", inputs)
        if proposal.instruction is not None or (state.summary is not None and not state.summary.done):
            return None
        summary = state.summary.text if state.summary is not None else None
        inputs = {} if summary is None else {"dataset_description": summary}
        if program_aware:
            inputs["program_code"] = state.program_code
            inputs["program_description"] = proposal.program_description
            inputs["module"] = proposal.module
            inputs["module_description"] = proposal.module_description
        inputs["task_demos"] = proposal.task_demos
        name = state.predictor_names[proposal.predictor]
        inputs["basic_instruction"] = state.program[name]["signature"]["instructions"]
        if proposal.tip:
            inputs["tip"] = proposal.tip
        signature = instruction_signature_key(
            use_dataset_summary=summary is not None, program_aware=program_aware, use_tip=bool(proposal.tip)
        )
        return generate(INSTRUCTION, signature, inputs)

    # -- tell --------------------------------------------------------------------------------------------------
    def record(self, state: MiproState, outcome: GenerateOutcome) -> None:
        """Take in the outcome of one of the proposer's requests (a failed instruction proposal raises)."""
        key = outcome.key
        if key.step in (DESCRIBE_DATA, SUMMARIZE_DATA):
            assert state.summary is not None
            if key == self.summary_work(state.summary).key:  # not an outcome of an earlier step, replayed
                self._record_summary(state.summary, outcome)
            return
        assert key.number is not None
        proposal = state.proposals[key.number]
        if key.step == DESCRIBE_PROGRAM:
            description = _completion(outcome, "program_description")
            if description is None:  # DSPy goes on without the program's and the module's description
                proposal.program_description, proposal.module = "Not available", "Not provided"
                proposal.module_description = "Not provided"
            else:
                proposal.program_description = strip_prefix(description)
                proposal.module = state.modules[proposal.predictor]
        elif key.step == DESCRIBE_MODULE:
            proposal.module_description = _completion(outcome, "module_description") or "Not provided"
        elif key.step == INSTRUCTION:
            instruction = _completion(outcome, "proposed_instruction")
            if instruction is None:
                name = state.predictor_names[proposal.predictor]
                raise RuntimeError(f"MIPROv2: proposing an instruction for {name!r} failed: {outcome.error}")
            proposal.instruction = strip_prefix(instruction)

    @staticmethod
    def _record_summary(summary: DatasetSummary, outcome: GenerateOutcome) -> None:
        if outcome.key.step == SUMMARIZE_DATA:
            text = _completion(outcome, "summary")
            summary.text, summary.done = (strip_prefix(text) if text is not None else None), True
            return
        observations = _completion(outcome, "observations")
        if summary.shown == 0:
            if observations is None:  # DSPy's proposer then goes without a dataset summary
                summary.done = True
                return
            summary.observations = observations
        elif observations is None:  # DSPy summarizes the observations made so far
            summary.refining = False
        elif len(observations) >= 8 and observations[:8].upper() == "COMPLETE":
            summary.skips += 1
            summary.refining = summary.skips < MAX_COMPLETE_SKIPS
        else:
            summary.observations += observations
        summary.shown += 1
        if summary.shown >= len(summary.batches):
            summary.refining = False

    def ground(self, state: MiproState) -> None:
        """Once the demo sets are made: show each proposal its set's bootstrapped demos."""
        for proposal in state.proposals:
            proposal.task_demos = self._task_demos(state, proposal)

    @staticmethod
    def proposed(state: MiproState) -> bool:
        """Whether the summary and every proposal are made."""
        summarized = state.summary is None or state.summary.done
        return summarized and all(p.instruction is not None for p in state.proposals)

    @staticmethod
    def instructions(state: MiproState) -> list[list[str]]:
        """Per predictor, the instruction candidates: its original instruction, then the proposals for it."""
        return [
            [state.program[name]["signature"]["instructions"]]
            + [p.instruction or "" for p in state.proposals if p.predictor == i]
            for i, name in enumerate(state.predictor_names)
        ]

    def _task_demos(self, state: MiproState, proposal: Proposal) -> str:
        """Up to three bootstrapped demos from the proposal's demo set and those after it, formatted as DSPy
        shows them (``Prefix: value`` per field); none for demo set 0 or when not few-shot-aware."""
        if not self.fewshot_aware or proposal.demo_set == 0:
            return NO_TASK_DEMOS
        name = state.predictor_names[proposal.predictor]
        fields = state.program[name]["signature"]["fields"]
        examples = []
        for demo_set in state.demo_sets[proposal.demo_set :] + state.demo_sets[: proposal.demo_set]:
            for demo in (demo_set.demos or {})[name][: demo_set.augmented.get(name, 0)]:
                examples.append("\n".join(f"{field['prefix']} {demo.get(field['name'])}" for field in fields))
        shown = examples[:BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT]
        return "\n\n".join(shown) + "\n\n" if shown else NO_TASK_DEMOS
