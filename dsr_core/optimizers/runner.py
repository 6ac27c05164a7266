"""``LocalRunner``: computes an optimizer's work items in this process with dsr_core's async engine, and the
helpers it builds live programs with (the teacher's LM, the live LMs of a loaded state)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..evaluate import Evaluate, _as_score, call_metric, is_transient, metric_feedback, takes_predictor
from ..limits import example_slot, example_slots
from ..modules.module import Module
from ..primitives import Example
from ..tracking import trace
from .work import (
    BootstrapOutcome,
    BootstrapWork,
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    GraphOutcome,
    GraphWork,
    TraceCall,
    TraceOutcome,
    TraceWork,
)

log = logging.getLogger("dsr_core.optimizers.base")  # the name the runner has always logged under


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


def teacher_lm(teacher_settings: dict[str, Any]) -> Any:
    """The LM of DSPy's ``teacher_settings`` (an LM, or the keyword arguments of one), or None."""
    lm = teacher_settings.get("lm")
    if isinstance(lm, dict):
        from ..lm import LM

        return LM(**lm)
    return lm


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
