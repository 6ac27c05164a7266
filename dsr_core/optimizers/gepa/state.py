"""GEPA's state: the candidate pool with its per-example validation scores and lineage, the iterations
running now, and every finished iteration and evaluation. All of it JSON: the state is the checkpoint."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from ..base import PhasedState, ScoredTrial

STAGE_OFFSETS = {"minibatch": 1, "subsample": 2, "full": 3}  # trial number = 3 * iteration + offset

Stage = Literal["trace", "reflect", "minibatch", "subsample", "full", "done"]
Outcome = Literal["accepted", "rejected", "skipped", "no_proposal"]


def trial_number(iteration: int, stage: str) -> int:
    """The EvaluateWork candidate id of an iteration's evaluation (0 is the baseline)."""
    return 3 * iteration + STAGE_OFFSETS[stage]


def with_instructions(program: dict[str, Any], instructions: dict[str, str]) -> dict[str, Any]:
    """A copy of a program state with these predictors' instructions replaced."""
    state = dict(program)
    for name, instruction in instructions.items():
        entry = dict(state[name])
        entry["signature"] = {**entry["signature"], "instructions": instruction}
        state[name] = entry
    return state


class Candidate(BaseModel):
    """A program in the pool: the base program with these instructions, where it came from, and its score
    on every validation example."""

    number: int
    instructions: dict[str, str]  # per predictor
    parents: list[int] = []
    origin: Literal["seed", "mutation", "merge"]
    iteration: int | None = None  # the iteration that made it (None: the program as given)
    component: str | None = None  # mutation: the predictor whose instruction the reflection rewrote
    ancestor: int | None = None  # merge: the common ancestor of its two parents
    val_scores: list[float]
    discovered_at: int = 0  # metric calls spent before its full evaluation (gepa's discovery_eval_counts)
    next_component: int = 0  # round robin: position of the predictor its next mutation rewrites

    @property
    def mean(self) -> float:
        return sum(self.val_scores) / len(self.val_scores) if self.val_scores else 0.0


class Iteration(BaseModel):
    """One GEPA iteration: a reflective mutation of ``parents[0]`` (trace the minibatch, reflect, score the
    new instruction on the minibatch, then on the validation set if it did better) or a merge of
    ``parents`` (score on a validation subsample, then on all of it if no worse than the better parent)."""

    number: int
    kind: Literal["mutation", "merge"]
    stage: Stage
    parents: list[int]
    indices: list[int]  # mutation: the training minibatch; merge: positions in the validation set
    instructions: dict[str, str] = {}  # of the new candidate, once known
    component: str | None = None
    component_position: int | None = None  # set when the round robin chose the component
    ancestor: int | None = None
    sources: list[int] = []  # merge: per predictor, the candidate its instruction came from
    reflection: dict[str, str] | None = None  # the reflection request's inputs, until it is answered
    scores_before: list[float] = []  # mutation: the parent's minibatch scores; merge: the parents' sums
    scores_after: list[float] = []  # the new candidate's minibatch (or subsample) scores
    outcome: Outcome | None = None
    candidate: int | None = None  # the pool number of the candidate it added
    metric_calls: int = 0


class Trial(ScoredTrial):
    """One evaluation GEPA asked for; ``number`` is its EvaluateWork's candidate id."""

    kind: Literal["baseline", "minibatch", "subsample", "full"]
    params: dict[str, int]  # iteration, parent (and other_parent, ancestor for merges)


class GepaState(PhasedState):
    phase: Literal["baseline", "search", "done"] = "baseline"
    program: dict[str, Any]  # the program as given; every candidate is it with other instructions
    val_split: Literal["train", "val"]  # "train" when there is no valset (DSPy validates on the trainset)
    val_indices: list[int]
    max_metric_calls: int
    metric_calls: int = 0  # spent by the iterations a one-at-a-time run makes
    discarded_metric_calls: int = 0  # spent on dropped speculative iterations (num_proposals > 1 counts it)
    candidates: list[Candidate] = []
    next_iteration: int = 0
    running: list[Iteration] = []
    history: list[Iteration] = []  # every finished iteration, in order
    trials: list[Trial] = []
    found_new_program: bool = False  # the last iteration added a mutation (a merge may follow)
    merges_due: int = 0
    merges_accepted: int = 0
    tried_triplets: list[list[int]] = []  # (first, second, ancestor) of every merge tried
    tried_merges: list[list[int]] = []  # (first, second, *sources) of every merge tried

    @property
    def current_phase(self) -> str:
        if self.done or self.phase != "search" or not self.running:
            return "done" if self.done else self.phase
        front = self.running[0]
        return "merge" if front.kind == "merge" else front.stage

    @property
    def val_scores(self) -> list[list[float]]:
        return [candidate.val_scores for candidate in self.candidates]
