"""The ask/tell shape every optimizer has, the work it asks for, and an in-process runner for that work.

An optimizer owns no loop: ``ask(state)`` says what must be computed next (bootstrap these training
examples with this teacher, evaluate these candidate programs on these examples, ask the prompt model for
these proposals), the caller computes it anywhere (in process with ``LocalRunner``, or as Prefect tasks
over shards), and ``tell(state, results)`` returns the next state. States are pydantic models that
serialize to JSON: the state is the checkpoint. Programs inside work items and states are program-state
dicts (``Module.dump_state()``), never objects.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ..evaluate import Evaluate, _as_score, _metric_arity, is_transient
from ..modules.module import Module
from ..primitives import Example
from ..tracking import trace


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


class ProposeWork(BaseModel):
    """Ask the prompt model for ``n`` instructions (and output prefixes) for predictor ``predictor``."""

    kind: Literal["propose"] = "propose"
    predictor: str
    signature: Literal["basic", "attempts"]
    inputs: dict[str, Any]
    n: int
    temperature: float
    rollout: str  # makes each proposal request its own cache entry, reproducibly


class GenerateWork(BaseModel):
    """Ask the prompt model for ``n`` completions of a proposal signature (a key of
    ``proposals.PROPOSAL_SIGNATURES``); ``key`` routes the outcome back to the optimizer that asked."""

    kind: Literal["generate"] = "generate"
    key: str
    signature: str
    inputs: dict[str, Any]
    n: int = 1
    temperature: float = 1.0
    rollout: str | None = None  # a distinct, reproducible cache entry; None: the plain request


Work = Annotated[BootstrapWork | EvaluateWork | ProposeWork | GenerateWork, Field(discriminator="kind")]


class ProposeOutcome(BaseModel):
    predictor: str
    proposals: list[tuple[str, str]]  # (instruction, output prefix)


class GenerateOutcome(BaseModel):
    """The completions' output fields, or the error that stopped the request (the optimizer decides what
    a failed proposal means)."""

    key: str
    completions: list[dict[str, Any]] = []
    error: str | None = None
    transient: bool = False  # the error was an infrastructure failure (a later attempt may succeed)


class BootstrapOutcome(BaseModel):
    index: int
    success: bool
    demos: dict[str, dict[str, Any]] = {}  # predictor name -> the demo its call produced
    error: str | None = None
    transient: bool = False  # the error was an infrastructure failure (a later attempt may succeed)


class EvaluateOutcome(BaseModel):
    candidate: int
    split: Literal["train", "val"]
    indices: list[int]
    scores: list[float]
    errors: int = 0

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


class OptimizerState(BaseModel):
    """What every optimizer state has; subclasses add their own fields."""

    optimizer: str
    seed: int
    predictor_names: list[str]
    n_train: int
    n_val: int
    done: bool = False
    result: dict[str, Any] | None = None  # the final program state once done
    best_score: float | None = None


def merge_evaluations(results: Iterable[Any]) -> dict[tuple[int, str], EvaluateOutcome]:
    """The evaluate outcomes in ``results`` joined per (candidate, split), rows ordered by example index.

    A caller may split one EvaluateWork into shards and return an outcome per shard; the merged outcome
    (and its mean) is the same however many shards there were and in whatever order they came back.
    """
    parts: dict[tuple[int, str], list[EvaluateOutcome]] = {}
    for result in results:
        if isinstance(result, EvaluateOutcome):
            parts.setdefault((result.candidate, result.split), []).append(result)
    merged = {}
    for key, outcomes in parts.items():
        rows = sorted((i, s) for outcome in outcomes for i, s in zip(outcome.indices, outcome.scores, strict=True))
        merged[key] = EvaluateOutcome(
            candidate=outcomes[0].candidate,
            split=outcomes[0].split,
            indices=[i for i, _ in rows],
            scores=[s for _, s in rows],
            errors=sum(outcome.errors for outcome in outcomes),
        )
    return merged


def rng_for(seed: int, *labels: Any) -> random.Random:
    """A Random derived from the seed and labels: the same draw on any machine, in any order of calls."""
    return random.Random(f"{seed}:" + ":".join(str(label) for label in labels))


class LocalRunner:
    """Computes work items in this process with dsr_core's async engine."""

    def __init__(
        self,
        student: Module,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None,
        metric: Callable[..., Any],
        *,
        concurrency: int = 32,
        prompt_lm: Any = None,
    ) -> None:
        self.prompt_lm = prompt_lm
        self.student = student
        self.trainset = list(trainset)
        self.valset = list(valset) if valset is not None else []
        self.metric = metric
        self.concurrency = concurrency

    def program(self, state: dict[str, Any]) -> Module:
        program = self.student.deepcopy()
        program.load_state(state)
        return program

    async def run(self, work: Sequence[BootstrapWork | EvaluateWork | ProposeWork | GenerateWork]) -> list[Any]:
        import asyncio

        async def one(item: BootstrapWork | EvaluateWork | ProposeWork | GenerateWork) -> list[Any]:
            if isinstance(item, BootstrapWork):
                return list(await self.bootstrap(item))
            if isinstance(item, ProposeWork):
                return [await self.propose(item)]
            if isinstance(item, GenerateWork):
                return [await self.generate(item)]
            return [await self.evaluate(item)]

        batches = await asyncio.gather(*(one(item) for item in work))
        return [result for batch in batches for result in batch]

    def proposal_lm(self) -> Any:
        """The prompt model: the one given, else the configured LM, else the student's first LM."""
        from ..settings import get

        return self.prompt_lm or get("lm") or next((p.lm for p in self.student.predictors() if p.lm), None)

    async def propose(self, work: ProposeWork) -> ProposeOutcome:
        from ..modules.predict import Predict
        from .proposals import PROPOSAL_SIGNATURES

        predict = Predict(PROPOSAL_SIGNATURES[work.signature], lm=self.proposal_lm())
        prediction = await predict.acall(
            **work.inputs, config={"n": work.n, "temperature": work.temperature}, rollout_id=work.rollout
        )
        proposals = [
            (
                str(c["proposed_instruction"]).strip('"').strip(),
                str(c["proposed_prefix_for_output_field"]).strip('"').strip(),
            )
            for c in prediction.completions
        ]
        return ProposeOutcome(predictor=work.predictor, proposals=proposals)

    async def generate(self, work: GenerateWork) -> GenerateOutcome:
        from ..modules.predict import Predict
        from .proposals import PROPOSAL_SIGNATURES

        signature = PROPOSAL_SIGNATURES[work.signature]
        predict = Predict(signature, lm=self.proposal_lm())
        try:
            prediction = await predict.acall(
                **work.inputs, config={"n": work.n, "temperature": work.temperature}, rollout_id=work.rollout
            )
        except Exception as exc:  # noqa: BLE001 - reported in the outcome; the optimizer decides what it means
            return GenerateOutcome(key=work.key, error=f"{type(exc).__name__}: {exc}", transient=is_transient(exc))
        completions = [{name: c.get(name) for name in signature.output_fields} for c in prediction.completions]
        return GenerateOutcome(key=work.key, completions=completions)

    async def evaluate(self, work: EvaluateWork) -> EvaluateOutcome:
        examples = self.trainset if work.split == "train" else self.valset
        subset = [examples[i] for i in work.indices]
        result = await Evaluate(subset, self.metric, concurrency=self.concurrency).acall(
            self.program(work.program), indices=work.indices
        )
        return EvaluateOutcome(
            candidate=work.candidate,
            split=work.split,
            indices=[r.index for r in result.rows],
            scores=[r.score for r in result.rows],
            errors=result.errors,
        )

    async def bootstrap(self, work: BootstrapWork) -> list[BootstrapOutcome]:
        import asyncio

        teacher = self.program(work.teacher)
        names = {id(p): name for name, p in teacher.named_predictors()}
        if work.round > 0:  # later rounds sample fresh traces at temperature 1.0, as DSPy does
            for predictor in teacher.predictors():
                predictor.config = {**predictor.config, "temperature": 1.0, "rollout_id": work.round}
        arity = _metric_arity(self.metric)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(index: int) -> BootstrapOutcome:
            example = self.trainset[index]
            async with semaphore:
                try:
                    with trace() as calls:
                        prediction = await teacher.acall(**example.inputs().to_dict())
                    value = self.metric(example, prediction, calls) if arity >= 3 else self.metric(example, prediction)
                    if asyncio.iscoroutine(value):
                        value = await value
                    score = _as_score(value)
                except Exception as exc:  # noqa: BLE001 - a failed bootstrap attempt is just not a demo
                    error = f"{type(exc).__name__}: {exc}"
                    return BootstrapOutcome(index=index, success=False, error=error, transient=is_transient(exc))
            threshold = work.metric_threshold
            success = score >= threshold if threshold is not None else score > 0
            demos = {}
            if success:
                for predictor, inputs, output in calls:
                    name = names.get(id(predictor))
                    if name is not None and name not in demos:  # first call of each predictor, as DSPy keeps
                        demos[name] = {**inputs, **output.to_dict()}
            return BootstrapOutcome(index=index, success=success, demos=demos)

        return list(await asyncio.gather(*(one(i) for i in work.indices)))


# -- parameters ----------------------------------------------------------------------------------------------------


def parameter_problems(
    init: Callable[..., Any], params: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Check ``params`` against the annotations of an optimizer's ``__init__`` (types and ranges such as
    ``PositiveInt``). Returns the values as validated (``"3"`` for an int becomes 3) and the problems as
    (parameter, message) pairs; unknown names are left to the caller."""
    from typing import get_type_hints

    from pydantic import ConfigDict, TypeAdapter, ValidationError

    config = ConfigDict(arbitrary_types_allowed=True)  # a teacher is a Module, validated by isinstance
    hints = get_type_hints(init, include_extras=True)
    checked: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, value in params.items():
        if name not in hints:
            checked[name] = value
            continue
        adapter = TypeAdapter(hints[name], config=config)
        try:
            checked[name] = adapter.validate_python(value)
        except ValidationError as exc:
            reasons = "; ".join(error["msg"] for error in exc.errors())
            problems.append((name, f"{reasons} (got {value!r})"))
    return checked, problems


def checking_parameters(init: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an optimizer's ``__init__`` so that a value of the wrong type or out of range (``-3`` trials)
    fails at construction with the parameter named, before anything is spent."""
    import functools
    import inspect

    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        values = {k: v for k, v in bound.arguments.items() if k != "self"}
        checked, problems = parameter_problems(init, values)
        if problems:
            details = "; ".join(f"{name}: {message}" for name, message in problems)
            raise ValueError(f"{type(self).__name__}: invalid parameter(s): {details}")
        init(self, **checked)

    return wrapper
