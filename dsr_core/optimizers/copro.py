"""COPRO: a prompt model proposes instructions (and output prefixes); each is scored; the next round
proposes from the scored attempts. DSPy's defaults: breadth=10, depth=3, init_temperature=1.4.

As a state machine: propose (one request per predictor, n=breadth-1, plus the current instruction), then
for each predictor in turn evaluate its candidates on the training set with the other predictors at their
best so far, keep the best, and, unless this was the last depth, propose again from the top attempts.
Difference from DSPy: with several predictors, DSPy re-scores every earlier candidate at each depth; here
only the newest ones are scored (earlier scores are kept), which saves depth x breadth evaluations.

DSPy's constructor (``COPRO(prompt_model, metric, breadth, depth, init_temperature, track_stats)``) and
``compile(student, trainset=..., eval_kwargs=...)``: of ``eval_kwargs``, ``num_threads`` sets the
concurrency and ``max_errors``/``provide_traceback`` go to every evaluation; the others are display options
with no effect here. The compiled program carries DSPy's ``total_calls`` and, with ``track_stats=True``,
``results_best`` and ``results_latest`` (per predictor and depth, see ``copro_stats``), built from the finished
state, which records every evaluation of every attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, NonNegativeFloat, PositiveInt, SerializerFunctionWrapHandler, model_serializer

from ..modules.module import Module
from ..primitives import Example
from .base import (
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    Optimizer,
    OptimizerState,
    WorkKey,
    base_fields,
    ignored,
)

PROPOSE = "propose"  # the step of a proposal request; its number is the predictor's position


class Repeat(BaseModel):
    """A later proposal of an attempt already scored (same instruction and prefix): its depth and own score."""

    depth: int
    score: float | None = None


class Attempt(BaseModel):
    """A scored (or to-be-scored) instruction and output prefix of one predictor.

    ``score`` is the best of its evaluations, ``depth`` the depth it was first proposed at. ``repeats`` and
    ``first_score`` (its first evaluation's score, kept once a repeat raised ``score``) record every evaluation,
    for ``track_stats``; they are left out of the JSON while empty, so a state that has none keeps its shape.
    """

    instruction: str
    prefix: str
    score: float | None = None
    depth: int = 0
    first_score: float | None = None
    repeats: list[Repeat] = []

    @model_serializer(mode="wrap")
    def _without_empty_records(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("first_score", 0) is None:
            del data["first_score"]
        if data.get("repeats") == []:
            del data["repeats"]
        return data


class CoproState(OptimizerState):
    phase: Literal["propose", "evaluate"] = "propose"
    depth: int = 0
    predictor_index: int = 0
    program: dict[str, Any]  # the best program so far (instructions and prefixes)
    candidates: dict[str, list[Attempt]] = {}  # newest proposals per predictor, not yet scored
    evaluated: dict[str, list[Attempt]] = {}  # every scored attempt per predictor

    @property
    def current_phase(self) -> str:
        return "done" if self.done else self.phase


def with_instruction(program_state: dict[str, Any], predictor: str, instruction: str, prefix: str) -> dict[str, Any]:
    """A copy of the program state with one predictor's instructions and last output prefix replaced."""
    state = {k: v for k, v in program_state.items()}
    entry = dict(state[predictor])
    signature = dict(entry["signature"])
    fields = [dict(f) for f in signature["fields"]]
    fields[-1]["prefix"] = prefix
    signature.update(instructions=instruction, fields=fields)
    entry["signature"] = signature
    state[predictor] = entry
    return state


def _proposals(name: str, outcome: GenerateOutcome) -> list[tuple[str, str]]:
    """The (instruction, output prefix) pairs of a proposal request, unquoted; a failed request raises, as a
    failed proposal raises in DSPy (resuming from the last checkpoint asks again)."""
    if outcome.error is not None:
        raise RuntimeError(f"COPRO: proposing instructions for {name!r} failed: {outcome.error}")
    return [
        (
            str(c["proposed_instruction"]).strip('"').strip(),
            str(c["proposed_prefix_for_output_field"]).strip('"').strip(),
        )
        for c in outcome.completions
    ]


class COPRO(Optimizer):
    name = "COPRO"

    def __init__(
        self,
        prompt_model: Any = None,
        metric: Callable[..., Any] | None = None,
        breadth: Annotated[int, Field(gt=1, description="COPRO needs breadth > 1")] = 10,
        depth: PositiveInt = 3,
        init_temperature: NonNegativeFloat = 1.4,
        track_stats: bool = False,
        verbose: bool = False,
        *,
        seed: int = 0,
        **_kwargs: Any,
    ) -> None:
        """DSPy's ``**_kwargs`` are accepted and unused, as in DSPy."""
        if breadth <= 1:
            raise ValueError("COPRO needs breadth > 1")
        if verbose:
            ignored(self.name, "verbose=True", "the steps are logged with logging")
        self.metric = metric
        self.prompt_model = prompt_model
        self.breadth = breadth
        self.depth = depth
        self.init_temperature = init_temperature
        self.track_stats = track_stats
        self.verbose = verbose
        self.seed = seed
        self.num_threads: int | None = None
        self.max_errors: int | None = None
        self.provide_traceback: bool | None = None

    def configured(self, **options: Any) -> COPRO:
        """DSPy's ``compile(..., eval_kwargs={...})``: the Evaluate keywords every candidate is scored with."""
        eval_kwargs = dict(options.pop("eval_kwargs", None) or {})
        optimizer = super().configured(**options)
        for name in ("num_threads", "max_errors", "provide_traceback"):
            if name in eval_kwargs:
                setattr(optimizer, name, eval_kwargs.pop(name))
        for name in eval_kwargs:
            ignored(self.name, f"eval_kwargs[{name!r}]", "candidates are scored without display or saved files")
        return optimizer

    def init_state(self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None) -> CoproState:
        return CoproState(**base_fields(self.name, self.seed, program, trainset, valset), program=program.dump_state())

    def planned_trials(self, state: CoproState) -> int:
        return self.depth * self.breadth * len(state.predictor_names)

    def finish(self, student: Module, state: CoproState) -> Module:
        """The best program with DSPy's ``total_calls``; with ``track_stats``, DSPy's ``results_best`` and
        ``results_latest`` too (see ``copro_stats``)."""
        from .copro_stats import attach_depth_stats, total_calls

        compiled = super().finish(student, state)
        compiled.total_calls = total_calls(state)
        if self.track_stats:
            attach_depth_stats(compiled, state)
        return compiled

    def best_so_far(self, state: CoproState) -> dict[str, Any] | None:
        """The program with the best instruction of each predictor finished so far."""
        return state.result or state.program

    def ask(self, state: CoproState) -> list[Any]:
        if state.done:
            return []
        if state.phase == "propose":
            return [self._proposal(state, number, name) for number, name in enumerate(state.predictor_names)]
        name = state.predictor_names[state.predictor_index]
        return [
            EvaluateWork(
                candidate=i,
                split="train",
                indices=list(range(state.n_train)),
                program=with_instruction(state.program, name, c.instruction, c.prefix),
            )
            for i, c in enumerate(state.candidates[name])
        ]

    def _proposal(self, state: CoproState, number: int, name: str) -> GenerateWork:
        """Ask the prompt model for instructions (and output prefixes) for predictor ``name``."""
        rollout = f"copro:{state.seed}:{state.depth}:{name}"
        if state.depth == 0 and not state.evaluated.get(name):
            instructions = state.program[name]["signature"]["instructions"]
            return GenerateWork(
                key=WorkKey(step=PROPOSE, number=number),
                signature="basic",
                inputs={"basic_instruction": instructions},
                n=self.breadth - 1,
                temperature=self.init_temperature,
                rollout=rollout,
            )
        best = sorted(state.evaluated[name], key=lambda a: a.score or 0.0, reverse=True)[: self.breadth]
        attempts: list[str] = []
        for i in range(len(best) - 1, -1, -1):  # ascending scores, as DSPy lists them
            attempts.append(f"Instruction #{len(best) - i}: {best[i].instruction}")
            attempts.append(f"Prefix #{len(best) - i}: {best[i].prefix}")
            attempts.append(f"Resulting Score #{len(best) - i}: {best[i].score}")
        return GenerateWork(
            key=WorkKey(step=PROPOSE, number=number),
            signature="attempts",
            inputs={"attempted_instructions": attempts},
            n=self.breadth,
            temperature=self.init_temperature,
            rollout=rollout,
        )

    def tell(self, state: CoproState, results: list[Any]) -> CoproState:
        state = state.model_copy(deep=True)
        if state.phase == "propose":
            for outcome in results:
                if not isinstance(outcome, GenerateOutcome) or outcome.key.step != PROPOSE:
                    continue
                assert outcome.key.number is not None
                name = state.predictor_names[outcome.key.number]
                proposals = [
                    Attempt(instruction=i, prefix=p, depth=state.depth) for i, p in _proposals(name, outcome) if i
                ]
                if state.depth == 0:  # the current instruction competes too
                    signature = state.program[name]["signature"]
                    proposals.append(
                        Attempt(
                            instruction=signature["instructions"],
                            prefix=signature["fields"][-1]["prefix"] or "",
                            depth=0,
                        )
                    )
                state.candidates[name] = proposals
            state.phase, state.predictor_index = "evaluate", 0
            return state
        name = state.predictor_names[state.predictor_index]
        candidates = state.candidates[name]
        for outcome in results:
            if isinstance(outcome, EvaluateOutcome):
                candidates[outcome.candidate].score = round(100.0 * outcome.mean, 4)
        evaluated = state.evaluated.setdefault(name, [])
        for candidate in candidates:
            same = next(
                (a for a in evaluated if (a.instruction, a.prefix) == (candidate.instruction, candidate.prefix)), None
            )
            if same is None:
                evaluated.append(candidate)
                continue
            same.repeats.append(Repeat(depth=candidate.depth, score=candidate.score))
            if (candidate.score or 0.0) > (same.score or 0.0):
                if same.first_score is None:
                    same.first_score = same.score
                same.score = candidate.score
        best = max(evaluated, key=lambda a: a.score or 0.0)  # max keeps the first of equal scores
        state.program = with_instruction(state.program, name, best.instruction, best.prefix)
        state.predictor_index += 1
        if state.predictor_index < len(state.predictor_names):
            return state
        state.best_score = best.score
        if state.depth == self.depth - 1:
            state.done, state.result = True, state.program
        else:
            state.depth += 1
            state.phase = "propose"
        return state
