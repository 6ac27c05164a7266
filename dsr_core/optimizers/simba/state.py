"""SIMBA's state: the program pool with each program's mini-batch scores and lineage, the step running now
(its mini-batch, rollouts, buckets and the new candidates being built) and a record of every finished step.
All of it JSON: the state is the checkpoint."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from ..base import PhasedState, ScoredTrial, TraceCall

Strategy = Literal["append_a_demo", "append_a_rule"]


class Program(BaseModel):
    """A program in the pool: the base program with these instructions and demos per predictor, where it came
    from, and its scores on the mini-batch it was built on. The baseline has no scores: DSPy scores it 0."""

    number: int
    instructions: dict[str, str]
    demos: dict[str, list[dict[str, Any]]]
    parent: int | None = None  # the source program it was built from (None: the program as given)
    step: int | None = None  # the step that built it
    strategy: Strategy | None = None
    applied: bool = False  # the strategy changed the program (False: its guard declined, DSPy keeps the copy)
    dropped_demos: int = 0  # demos removed (per predictor) before the strategy ran
    scores: list[float] = []

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


class Rollout(BaseModel):
    """One sampling model (``model``) running pool program ``program`` on training examples ``indices``."""

    model: int
    program: int
    indices: list[int]


class Trajectory(BaseModel):
    """One sampled run of a program on an example: its score, outputs, the metric's feedback and every
    predictor call."""

    score: float
    outputs: dict[str, Any] | None = None
    feedback: str | None = None
    calls: dict[str, list[TraceCall]] = {}


class Bucket(BaseModel):
    """Every trajectory of one mini-batch example, best first, with the statistics buckets are ranked by."""

    index: int  # the training example
    gold: dict[str, Any] = {}  # its labels (what the output should have been)
    trajectories: list[Trajectory]
    max_to_min_gap: float
    max_score: float
    max_to_avg_gap: float


class Plan(BaseModel):
    """The new candidate built from one bucket: a copy of ``source`` with some demos dropped, then changed by
    ``strategy``. A rule waits for the prompt model (``request`` holds its inputs until answered)."""

    bucket: int  # position in the ranked buckets
    source: int
    strategy: Strategy
    dropped_demos: int
    instructions: dict[str, str]
    demos: dict[str, list[dict[str, Any]]]
    status: Literal["ready", "pending", "failed"]
    applied: bool = False
    request: dict[str, Any] | None = None


class Step(BaseModel):
    """The step running now. Its trajectories and plans are dropped once it ends (``StepRecord`` stays)."""

    number: int
    batch: list[int]
    rollouts: list[Rollout]
    buckets: list[Bucket] = []
    p10: float = 0.0  # the 10th and 90th percentiles of every trajectory score of the step
    p90: float = 0.0
    baseline_score: float | None = None  # the mean of every trajectory score of the step
    plans: list[Plan] = []


class StepRecord(BaseModel):
    """A finished step: its mini-batch, the mean trajectory score, the candidates it added with their
    mini-batch means, and the best of them (the step's winner)."""

    number: int
    batch: list[int]
    baseline_score: float
    candidates: list[int]
    scores: list[float]
    winner: int | None


class Trial(ScoredTrial):
    """One evaluation SIMBA asked for: a new candidate on its step's mini-batch, or a winner scored at the
    end. ``number`` is its EvaluateWork's candidate id."""

    kind: Literal["minibatch", "final"]
    params: dict[str, int]  # step and program (and parent for a candidate)


class SimbaState(PhasedState):
    phase: Literal["sample", "rules", "evaluate", "final", "done"] = "sample"
    program: dict[str, Any]  # the program as given; every pool program is it with other instructions and demos
    program_code: str  # the program's source, shown to the prompt model
    fields: dict[str, dict[str, str]]  # per predictor: its input and output field descriptions (DSPy's text)
    train_inputs: list[dict[str, Any]]  # every training example's inputs, for the prompt model
    order: list[int]  # the current shuffle of the trainset
    position: int = 0  # where the next mini-batch starts in ``order``
    shuffles: int = 0  # how many times ``order`` was shuffled
    programs: list[Program]
    winners: list[int]  # the baseline, then each step's best new candidate
    step: Step | None = None
    history: list[StepRecord] = []
    final_split: Literal["train", "val"] = "train"
    final: list[int] = []  # the winners scored at the end, and their scores
    final_scores: list[float] = []
    trials: list[Trial] = []


def program_state(base: dict[str, Any], program: Program | Plan) -> dict[str, Any]:
    """The base program state with this program's instructions and demos."""
    state = dict(base)
    for name, instruction in program.instructions.items():
        entry = dict(state[name])
        entry["signature"] = {**entry["signature"], "instructions": instruction}
        entry["demos"] = list(program.demos[name])
        state[name] = entry
    return state
