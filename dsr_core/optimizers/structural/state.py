"""The structural search's state: every candidate graph with its lineage, edit, scores and cost, the step
running now and every evaluation asked for. All of it JSON: the state is the checkpoint."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from ...graph import Edit, ProgramGraph, graph_in_state
from ..base import PhasedState, ScoredTrial

Phase = Literal[
    "trace", "baseline", "diagnose", "propose", "rank", "minibatch", "confirm", "rebootstrap", "reconfirm", "done"
]
Status = Literal["baseline", "pending", "pruned", "screened_out", "rejected", "accepted", "chosen"]
TrialKind = Literal["baseline", "minibatch", "val"]
ACCEPTED: tuple[Status, ...] = ("accepted", "chosen")


class Candidate(BaseModel):
    """One graph the search scored: the baseline (no parent, no edit) or ``edit`` applied to candidate
    ``parent``. Costs are per example, measured on the validation set; ``lm_calls_per_run`` is the graph's
    own count. ``status``: ``pruned`` by the planner's ranking, ``screened_out`` on the minibatch, ``rejected``
    on the validation set, ``accepted`` (passed the rule, another child won), ``chosen`` (became the current
    graph).

    A re-bootstrapped candidate is its parent (an accepted Fuse or Split) with the demos of the nodes in
    ``rebootstrapped`` taken from the parent's successful runs on training examples ``demo_examples``; it
    has no edit of its own."""

    number: int
    step: int  # the search step that made it; the baseline is step 0's parent
    parent: int | None = None
    graph_hash: str
    parent_hash: str | None = None
    edit: Edit | None = None
    lm_calls_per_run: int
    program: dict[str, Any]  # a GraphProgram state: the graph rides in its metadata
    minibatch_score: float | None = None  # 0-100 on the step's shared training minibatch
    parent_minibatch_score: float | None = None  # the parent on the same minibatch
    val_score: float | None = None  # 0-100
    lm_calls: float | None = None
    tokens: float | None = None  # prompt + completion; None when nothing was measured (cached or not filled)
    status: Status = "pending"
    reason: str = ""
    rebootstrapped: list[str] = []  # the nodes whose demos were re-bootstrapped (empty: not re-bootstrapped)
    demo_examples: list[int] = []  # the training examples whose successful runs gave those demos

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED

    @property
    def graph(self) -> ProgramGraph:
        graph = graph_in_state(self.program)
        assert graph is not None  # every candidate's program is a GraphProgram state
        return graph


class Evaluation(BaseModel):
    """An evaluation the state waits for; ``trial`` is its EvaluateWork's candidate id."""

    trial: int
    candidate: int
    split: Literal["train", "val"]
    indices: list[int]


class SplitRequest(BaseModel):
    """A question to the prompt model: how to split Predict node ``node`` (``key`` identifies its content)."""

    number: int
    node: str
    key: str


class SplitProposal(BaseModel):
    """The prompt model's answer for one node: sub-signatures and their instructions (parsed into a Split
    against whichever graph the node is in)."""

    node: str
    sub_signatures: list[str]
    sub_instructions: list[str] = []


class Trial(ScoredTrial):
    """One evaluation the search asked for."""

    kind: TrialKind
    params: dict[str, int]  # candidate, step


class StructuralState(PhasedState):
    phase: Phase = "trace"
    student: dict[str, Any]  # the program as given, traced in the first step
    trace_indices: list[int]
    val_split: Literal["train", "val"]  # "train" when there is no valset
    val_indices: list[int]
    step: int = 0  # search steps started so far
    current: int | None = None  # the candidate the running step edits (the result once done)
    candidates: list[Candidate] = []
    minibatch: list[int] = []  # the running step's shared training examples
    children: list[int] = []  # the running step's candidates
    requests: list[SplitRequest] = []  # the running step's split questions
    diagnosis: list[int] = []  # the running step's traced training examples
    failures: dict[str, str] = {}  # per Predict node: its calls on the traced runs that fell short
    bootstrap: list[int] = []  # the running step's re-bootstrap examples, in the order their demos are taken
    proposals: dict[str, list[SplitProposal]] = {}  # per node key: the answers, reused while the node is unchanged
    pending: list[Evaluation] = []
    trials: list[Trial] = []

    @property
    def next_trial(self) -> int:
        return len(self.trials) + len(self.pending)
