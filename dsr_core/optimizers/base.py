"""The ask/tell shape every optimizer has, the work it asks for, and an in-process runner for that work.

An optimizer owns no loop: ``ask(state)`` says what must be computed next (bootstrap these training
examples with this teacher, evaluate these candidate programs on these examples, ask the prompt model for
these proposals), the caller computes it anywhere (in process with ``LocalRunner``, or as Prefect tasks
over shards), and ``tell(state, results)`` returns the next state. States are pydantic models that
serialize to JSON: the state is the checkpoint. Programs inside work items and states are program-state
dicts (``Module.dump_state()``), never objects.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._async import run_sync
from ..evaluate import Evaluate, _as_score, _setting, call_metric, is_transient, metric_feedback, takes_predictor
from ..limits import example_slot, example_slots
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


log = logging.getLogger(__name__)


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


class TrialRecord(BaseModel):
    """An optimizer's own record of one trial: the candidate it evaluated, what kind of evaluation, and the
    choice behind the candidate (MIPROv2's parameters)."""

    number: int  # the candidate id of the trial's EvaluateWork
    kind: str
    params: dict[str, int]


class OptimizerState(BaseModel):
    """What every optimizer state has; subclasses add their own fields.

    What a caller driving any optimizer may read from its state: ``done``, ``result``, ``best_score``,
    ``current_phase`` and ``recorded_trials`` (and ``trial(candidate)``); the rest is the optimizer's own.
    """

    optimizer: str
    seed: int
    predictor_names: list[str]
    n_train: int
    n_val: int
    done: bool = False
    result: dict[str, Any] | None = None  # the final program state once done
    best_score: float | None = None  # the best score so far (0-100) on the optimizer's selection split

    @property
    def current_phase(self) -> str:
        """What the optimizer is doing, for progress displays: ``done`` once done; ``searching`` unless the
        optimizer names its phases."""
        return "done" if self.done else "searching"

    @property
    def recorded_trials(self) -> Sequence[TrialRecord]:
        """The optimizer's own record of its finished trials, in order (none unless it keeps one)."""
        return ()

    def trial(self, candidate: int) -> TrialRecord | None:
        """The recorded trial that evaluated ``candidate``, if the optimizer keeps such a record."""
        return next((trial for trial in self.recorded_trials if trial.number == candidate), None)


class ScoredTrial(TrialRecord):
    """A trial with the number of examples it was scored on and its score (0-100)."""

    n_examples: int
    score: float

    @classmethod
    def of(cls, number: int, kind: str, params: dict[str, int], outcome: EvaluateOutcome) -> Any:
        """The trial of one merged evaluation outcome."""
        return cls(
            number=number,
            kind=kind,
            params=params,
            n_examples=len(outcome.scores),
            score=round(100.0 * outcome.mean, 4),
        )


class PhasedState(OptimizerState):
    """A state that names its phase in ``phase`` and keeps its trials in ``trials`` (both declared by the
    subclass, with its own phase names and trial kinds)."""

    @property
    def current_phase(self) -> str:
        return "done" if self.done else self.phase  # type: ignore[attr-defined,no-any-return]

    @property
    def recorded_trials(self) -> Sequence[TrialRecord]:
        return self.trials  # type: ignore[attr-defined,no-any-return]


def base_fields(optimizer: str, seed: int, program: Module, trainset: Sequence[Any], valset: Any) -> dict[str, Any]:
    """The OptimizerState fields of a fresh state."""
    return {
        "optimizer": optimizer,
        "seed": seed,
        "predictor_names": [name for name, _ in program.named_predictors()],
        "n_train": len(trainset),
        "n_val": len(valset) if valset is not None else 0,
    }


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
            lm_calls=sum(outcome.lm_calls for outcome in outcomes),
            prompt_tokens=sum(outcome.prompt_tokens for outcome in outcomes),
            completion_tokens=sum(outcome.completion_tokens for outcome in outcomes),
        )
    return merged


def rng_for(seed: int, *labels: Any) -> random.Random:
    """A Random derived from the seed and labels: the same draw on any machine, in any order of calls."""
    return random.Random(f"{seed}:" + ":".join(str(label) for label in labels))


class LocalRunner:
    """Computes work items in this process with dsr_core's async engine.

    ``teacher`` is the program bootstrap work runs (its state comes with the work; without one, the
    student's); ``teacher_settings`` are settings (``dsr.context``) it runs under, as DSPy's
    ``teacher_settings``. ``max_errors`` and ``provide_traceback`` go to every evaluation, as DSPy's
    optimizers pass them to Evaluate.
    """

    def __init__(
        self,
        student: Module,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None,
        metric: Callable[..., Any],
        *,
        concurrency: int = 32,
        prompt_lm: Any = None,
        teacher: Module | None = None,
        teacher_settings: dict[str, Any] | None = None,
        max_errors: int | None = None,
        provide_traceback: bool | None = None,
    ) -> None:
        self.prompt_lm = prompt_lm
        self.student = student
        self.teacher = teacher
        from ..settings import _KNOWN

        settings = {k: v for k, v in (teacher_settings or {}).items() if k in _KNOWN}
        if "lm" in settings:
            settings["lm"] = teacher_lm(settings)
        self.teacher_settings = settings
        self.trainset = list(trainset)
        self.valset = list(valset) if valset is not None else []
        self.metric = metric
        self.concurrency = concurrency
        self.max_errors = max_errors
        self.provide_traceback = provide_traceback

    def program(self, state: dict[str, Any], base: Module | None = None) -> Module:
        """``base`` (the student by default) with ``state`` loaded; a state that carries a program graph is
        built as the ``GraphProgram`` of that graph instead. A predictor whose saved LM is one of the live LMs
        of the student or the teacher gets that LM back (its key, retries, limits and connections)."""
        from ..graph import GraphProgram, graph_in_state

        if graph_in_state(state) is not None:
            program: Module = GraphProgram.from_program_state(state)
        else:
            program = (base or self.student).deepcopy()
            program.load_state(state)
        extra = [self.teacher_settings["lm"]] if self.teacher_settings.get("lm") is not None else []
        return with_live_lms(program, [self.student, self.teacher], extra)

    async def run(
        self, work: Sequence[BootstrapWork | EvaluateWork | GenerateWork | TraceWork | GraphWork]
    ) -> list[Any]:
        import asyncio

        async def one(item: BootstrapWork | EvaluateWork | GenerateWork | TraceWork | GraphWork) -> list[Any]:
            if isinstance(item, BootstrapWork):
                return list(await self.bootstrap(item))
            if isinstance(item, TraceWork):
                return list(await self.traces(item))
            if isinstance(item, GenerateWork):
                return [await self.generate(item)]
            if isinstance(item, GraphWork):
                return [await self.graph(item)]
            return [await self.evaluate(item)]

        token = example_slots.set(asyncio.Semaphore(self.concurrency))  # one cap for the whole step's examples
        try:
            batches = await asyncio.gather(*(one(item) for item in work))
        finally:
            example_slots.reset(token)
        return [result for batch in batches for result in batch]

    def proposal_lm(self) -> Any:
        """The prompt model: the one given, else the configured LM, else the student's first LM."""
        from ..settings import get

        return self.prompt_lm or get("lm") or next((p.lm for p in self.student.predictors() if p.lm), None)

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
        evaluate = Evaluate(
            subset,
            self.metric,
            concurrency=self.concurrency,
            max_errors=self.max_errors,
            provide_traceback=self.provide_traceback,
        )
        result = await evaluate.acall(self.program(work.program), indices=work.indices)
        usage = result.usage
        return EvaluateOutcome(
            candidate=work.candidate,
            split=work.split,
            indices=[r.index for r in result.rows],
            scores=[r.score for r in result.rows],
            errors=result.errors,
            lm_calls=usage.lm_calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )

    async def graph(self, work: GraphWork) -> GraphOutcome:
        """Trace the program on the training examples into its graph (``dsr_core.graph.atrace_program``)."""
        from ..graph import atrace_program

        program = self.program(work.program)
        try:
            graph = await atrace_program(program, [self.trainset[i] for i in work.indices])
        except Exception as exc:  # noqa: BLE001 - reported in the outcome; the optimizer decides what it means
            return GraphOutcome(error=f"{type(exc).__name__}: {exc}", transient=is_transient(exc))
        return GraphOutcome(graph=graph.model_dump(mode="json"))

    async def bootstrap(self, work: BootstrapWork) -> list[BootstrapOutcome]:
        """Run the teacher on each example, without the example itself among its demos (as DSPy), under the
        teacher settings; keep the first call of each predictor when the metric (given the trace) accepts."""
        import asyncio

        from ..settings import context

        teacher = self.program(work.teacher, base=self.teacher)
        if work.round > 0:  # later rounds sample fresh traces at temperature 1.0, as DSPy does
            for predictor in teacher.predictors():
                predictor.config = {**predictor.config, "temperature": 1.0, "rollout_id": work.round}

        def without(example: Example) -> Module:
            record = example.to_dict()
            if not any(_as_mapping_demo(d) == record for p in teacher.predictors() for d in p.demos):
                return teacher
            local = teacher.deepcopy()
            for predictor in local.predictors():
                predictor.demos = [d for d in predictor.demos if _as_mapping_demo(d) != record]
            return local

        async def one(index: int) -> BootstrapOutcome:
            example = self.trainset[index]
            runner = without(example)
            names = {id(p): name for name, p in runner.named_predictors()}
            async with example_slot():
                try:
                    with context(**self.teacher_settings), trace() as calls:
                        prediction = await runner.acall(**example.inputs().to_dict())
                    score = _as_score(await call_metric(self.metric, example, prediction, calls))
                except Exception as exc:  # noqa: BLE001 - a failed bootstrap attempt is just not a demo
                    error = f"{type(exc).__name__}: {exc}"
                    log.error("Failed to run or to evaluate example %s with %s due to %s.", example, self.metric, exc)
                    return BootstrapOutcome(index=index, success=False, error=error, transient=is_transient(exc))
            threshold = work.metric_threshold
            success = score >= threshold if threshold else bool(score)  # DSPy: a threshold of 0 is no threshold
            demos = {}
            if success:
                for predictor, inputs, output in calls:
                    name = names.get(id(predictor))
                    if name is not None and name not in demos:  # first call of each predictor, as DSPy keeps
                        demos[name] = {"augmented": True, **inputs, **output.to_dict()}
            return BootstrapOutcome(index=index, success=success, demos=demos)

        return list(await asyncio.gather(*(one(i) for i in work.indices)))

    async def traces(self, work: TraceWork) -> list[TraceOutcome]:
        """Run the candidate on each example under ``trace()``, score it, and, for a GEPA feedback metric, ask
        the metric once more per predictor that ran, with that predictor's own calls (DSPy's pred_trace)."""
        import asyncio

        from ..adapters.types import jsonable

        program = self.program(work.program)
        names = {id(p): name for name, p in program.named_predictors()}
        per_predictor = takes_predictor(self.metric)

        async def one(index: int) -> TraceOutcome:
            example = self.trainset[index]
            async with example_slot():
                try:
                    with trace() as calls:
                        prediction = await program.acall(**example.inputs().to_dict())
                    value = await call_metric(self.metric, example, prediction, calls)
                    score = _as_score(value)
                    own: dict[str, list[Any]] = {}
                    for call in calls:
                        name = names.get(id(call[0]))
                        if name is not None:
                            own.setdefault(name, []).append(call)
                    feedback: dict[str, str] = {}
                    for name, sub_trace in own.items() if per_predictor else ():
                        text = metric_feedback(
                            await call_metric(
                                self.metric, example, prediction, calls, pred_name=name, pred_trace=sub_trace
                            )
                        )
                        if text is not None:
                            feedback[name] = text
                except Exception as exc:  # noqa: BLE001 - a failed example is reported in its outcome
                    log.error("Failed to trace example %s with %s due to %s.", example, self.metric, exc)
                    return TraceOutcome(
                        candidate=work.candidate,
                        index=index,
                        error=f"{type(exc).__name__}: {exc}",
                        transient=is_transient(exc),
                    )
            return TraceOutcome(
                candidate=work.candidate,
                index=index,
                score=score,
                gold=jsonable(example.labels().to_dict()) if example.input_keys is not None else {},
                outputs=jsonable(prediction.to_dict()),
                feedback=metric_feedback(value),
                predictor_feedback=feedback,
                calls={
                    name: [
                        TraceCall(inputs=jsonable(inputs), outputs=jsonable(output.to_dict()))
                        for _, inputs, output in sub
                    ]
                    for name, sub in own.items()
                },
            )

        return list(await asyncio.gather(*(one(i) for i in work.indices)))


class Optimizer:
    """The ask/tell protocol plus ``compile`` (drive the machine in process, for notebooks)."""

    name = "Optimizer"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every optimizer's constructor checks its parameters against its annotations (checking_parameters)."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = checking_parameters(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def init_state(
        self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None
    ) -> OptimizerState:
        raise NotImplementedError

    def ask(self, state: Any) -> list[BootstrapWork | EvaluateWork | GenerateWork | TraceWork | GraphWork]:
        raise NotImplementedError

    def tell(self, state: Any, results: list[Any]) -> Any:
        raise NotImplementedError

    def planned_trials(self, state: Any) -> int | None:
        """How many candidate evaluations the whole run makes, when known (for progress displays)."""
        return None

    def compile(
        self,
        student: Module,
        trainset: Sequence[Example] | None = None,
        valset: Sequence[Example] | None = None,
        *,
        teacher: Module | None = None,
        metric: Callable[..., Any] | None = None,
        concurrency: int | None = None,
        **options: Any,
    ) -> Module:
        """Drive the machine in process and return the compiled program. DSPy's ``compile(student,
        trainset=..., teacher=..., valset=...)`` and its other keywords (see ``configured``) work too."""
        if trainset is None:
            raise TypeError(f"{self.name}.compile() needs a trainset")
        optimizer = self.configured(**options)
        if teacher is not None:
            optimizer.teacher = teacher
        metric = metric or getattr(optimizer, "metric", None)
        if metric is None:
            raise ValueError(f"{self.name}.compile needs a metric")
        state = optimizer.init_state(student, trainset, valset)
        runner = LocalRunner(
            student,
            trainset,
            valset,
            metric,
            concurrency=concurrency or getattr(optimizer, "num_threads", None) or 32,
            prompt_lm=getattr(optimizer, "prompt_model", None),
            teacher=getattr(optimizer, "teacher", None),
            teacher_settings=getattr(optimizer, "teacher_settings", None),
            max_errors=effective_max_errors(getattr(optimizer, "max_errors", None)),
            provide_traceback=getattr(optimizer, "provide_traceback", None),
        )
        while not state.done:
            state = optimizer.tell(state, run_sync(runner.run(optimizer.ask(state))))
        return optimizer.finish(student, state)

    def best_so_far(self, state: Any) -> dict[str, Any] | None:
        """The program state of the best candidate a state holds, for a run stopped before it is done (by a
        budget); None when the optimizer cannot name one yet (the caller then keeps the student)."""
        return state.result  # type: ignore[no-any-return]

    def finish(self, student: Module, state: Any) -> Module:
        """The program of a finished state, marked compiled as DSPy marks it (a compiled teacher keeps its demos)."""
        compiled = student.deepcopy()
        compiled.load_state(state.result)
        compiled._compiled = True
        return compiled

    def configured(self, **options: Any) -> Optimizer:
        """A copy of this optimizer with DSPy's ``compile`` keywords applied (none by default)."""
        if options:
            raise TypeError(f"{self.name}.compile() got unexpected keyword(s): {', '.join(sorted(options))}")
        return copy.copy(self)


def teacher_lm(teacher_settings: dict[str, Any]) -> Any:
    """The LM of DSPy's ``teacher_settings`` (an LM, or the keyword arguments of one), or None."""
    lm = teacher_settings.get("lm")
    if isinstance(lm, dict):
        from ..lm import LM

        return LM(**lm)
    return lm


def check_teacher_settings(optimizer: str, teacher_settings: dict[str, Any]) -> None:
    """Warn about teacher settings dsr's settings do not have (DSPy's ``trace`` and such)."""
    from ..settings import _KNOWN

    for key in teacher_settings:
        if key not in _KNOWN:
            ignored(optimizer, f"teacher_settings[{key!r}]", f"dsr's settings are {', '.join(sorted(_KNOWN))}")


def _as_mapping_demo(demo: Any) -> dict[str, Any]:
    return demo.to_dict() if isinstance(demo, Example) else dict(demo)


def _lm_key(lm: Any) -> str:
    return json.dumps(lm.dump_state(), sort_keys=True, default=str)


def with_live_lms(program: Module, sources: Iterable[Module | None], extra: Iterable[Any] = ()) -> Module:
    """``program`` with each predictor whose LM has the settings of a live LM (one of ``extra``, or of the
    predictors of ``sources``) given that LM back: a loaded state names LMs by settings, never by object."""
    live: dict[str, Any] = {_lm_key(lm): lm for lm in extra}
    for module in sources:
        for predictor in module.predictors() if module is not None else []:
            if predictor.lm is not None:
                live.setdefault(_lm_key(predictor.lm), predictor.lm)
    for predictor in program.predictors():
        if predictor.lm is not None:
            predictor.lm = live.get(_lm_key(predictor.lm), predictor.lm)
    return program


def effective_max_errors(max_errors: int | None) -> int | None:
    """DSPy's rule: the optimizer's ``max_errors``, else the ``max_errors`` setting (none: no limit)."""
    return max_errors if max_errors is not None else _setting("max_errors", None)


def ignored(optimizer: str, parameter: str, why: str) -> None:
    """Warn once per call site that a DSPy parameter is accepted and has no effect here, and why."""
    warnings.warn(f"{optimizer}: {parameter} has no effect in dsr ({why})", stacklevel=3)


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
