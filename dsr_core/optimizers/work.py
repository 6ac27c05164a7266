"""The work an optimizer asks for and the outcomes it is told: pydantic models that serialize to JSON, so a
step can be computed anywhere (in process, or as Prefect tasks over shards). Programs inside work items are
program-state dicts (``Module.dump_state()``), never objects."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class BootstrapWork(BaseModel):
    """Run ``teacher`` on training examples ``indices``; keep the traces of the ones the metric accepts."""

    kind: Literal["bootstrap"] = "bootstrap"
    teacher: dict[str, Any]
    indices: list[int]
    round: int = 0
    metric_threshold: float | None = None


class EvaluateWork(BaseModel):
    """Score candidate ``candidate`` (program state ``program``) on examples ``indices`` of ``split``."""

    kind: Literal["evaluate"] = "evaluate"
    candidate: int
    program: dict[str, Any]
    split: Literal["train", "val"]
    indices: list[int]


class WorkKey(BaseModel):
    """Which of an optimizer's requests a generation answers: a step (``"propose"``, ``"instruction"``, ...)
    and, for a step asked more than once, the number of the thing it is for (a proposal, a predictor)."""

    model_config = ConfigDict(frozen=True)

    step: str
    number: int | None = None

    def __str__(self) -> str:
        return self.step if self.number is None else f"{self.step}:{self.number}"


class GenerateWork(BaseModel):
    """Ask the prompt model for ``n`` completions of a proposal signature (a key of
    ``proposals.PROPOSAL_SIGNATURES``); ``key`` routes the outcome back to the optimizer that asked."""

    kind: Literal["generate"] = "generate"
    key: WorkKey
    signature: str
    inputs: dict[str, Any]
    n: int = 1
    temperature: float = 1.0
    rollout: str | None = None  # a distinct, reproducible cache entry; None: the plain request


class TraceWork(BaseModel):
    """Run candidate ``candidate`` (program state ``program``) on training examples ``indices`` and keep, per
    example, the score, the metric's feedback and every predictor call: what a reflective optimizer (GEPA)
    shows its reflection model."""

    kind: Literal["trace"] = "trace"
    candidate: int
    program: dict[str, Any]
    indices: list[int]


class GraphWork(BaseModel):
    """Trace program ``program`` (a program state) on training examples ``indices`` into a ProgramGraph:
    what a structural optimizer starts from. Tracing runs the program, so it is work, not state setup."""

    kind: Literal["graph"] = "graph"
    program: dict[str, Any]
    indices: list[int]


Work = Annotated[BootstrapWork | EvaluateWork | GenerateWork | TraceWork | GraphWork, Field(discriminator="kind")]


class GenerateOutcome(BaseModel):
    """The completions' output fields, or the error that stopped the request (the optimizer decides what
    a failed proposal means)."""

    key: WorkKey
    completions: list[dict[str, Any]] = []
    error: str | None = None
    transient: bool = False  # the error was an infrastructure failure (a later attempt may succeed)


class BootstrapOutcome(BaseModel):
    index: int
    success: bool
    demos: dict[str, dict[str, Any]] = {}  # predictor name -> the demo its call produced
    error: str | None = None
    transient: bool = False  # the error was an infrastructure failure (a later attempt may succeed)


class GraphOutcome(BaseModel):
    """The traced graph (``ProgramGraph`` JSON), or the error that stopped the tracing."""

    graph: dict[str, Any] | None = None
    error: str | None = None
    transient: bool = False  # the error was an infrastructure failure (a later attempt may succeed)


class TraceCall(BaseModel):
    """One predictor call of a traced run: its inputs and outputs, as JSON."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]


class TraceOutcome(BaseModel):
    """One traced example. ``feedback`` is the metric's text about the whole program (None when the metric
    returns a bare score); ``predictor_feedback`` what a GEPA feedback metric said about each predictor
    given its own calls; ``calls`` each predictor's calls in order. A failed example has an error, score 0
    and no calls. ``gold`` is the example's labels (what the output should have been)."""

    candidate: int
    index: int
    score: float = 0.0
    gold: dict[str, Any] = {}
    outputs: dict[str, Any] | None = None
    feedback: str | None = None
    predictor_feedback: dict[str, str] = {}
    calls: dict[str, list[TraceCall]] = {}
    error: str | None = None
    transient: bool = False  # the error was an infrastructure failure (a later attempt may succeed)


class EvaluateOutcome(BaseModel):
    candidate: int
    split: Literal["train", "val"]
    indices: list[int]
    scores: list[float]
    errors: int = 0
    # what the evaluation cost, summed over its examples (cached calls count as calls and carry no tokens)
    lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0
