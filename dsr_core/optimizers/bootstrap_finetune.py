"""BootstrapFinetune and bootstrap_trace_data, DSPy's fine-tuning optimizer, and BetterTogether, DSPy's
optimizer that alternates prompt and weight optimization.

``bootstrap_trace_data`` runs a program over a dataset (concurrently, ``num_threads`` at a time) under
``trace()`` and returns, per example, the example, the prediction, the trace of predictor calls and the
metric's score: DSPy's records. ``BootstrapFinetune.compile`` bootstraps those traces with the teacher (the
student by default), keeps the ones the metric accepts, turns every kept predictor call into one training
record with the adapter's ``format_finetune_data`` (the exact messages the program sends, plus the answer),
starts one fine-tuning job per LM (``multitask``, the default) or per predictor, all at once, and gives each
predictor its fine-tuned LM.

It is not an ask/tell machine: a fine-tuning job is neither work a runner computes nor state a checkpoint
can hold without the provider's job ids, so ``compile`` drives it in process as DSPy does (``init_state``,
``ask`` and ``tell`` say so). Differences from DSPy: the checks run before anything is spent (a predictor
without an LM, structurally different teachers) and raise ``ValueError`` where DSPy asserts; a trace entry
for a reply that did not parse (``FailedPrediction``) is not training data; and a job that fails raises its
``FinetuneJobError`` from ``compile``.

``BetterTogether`` runs other optimizers' ``compile`` in a sequence (``"p -> w -> p"``), scores each result on
a validation set and returns the best, as DSPy's does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from .. import settings as _settings
from .._async import run_sync
from ..errors import AdapterParseError, LMError
from ..evaluate import call_metric
from ..lm.base import BaseLM
from ..modules.module import Module
from ..modules.predict import Predict, _as_mapping, adapter_for
from ..primitives import Example, Prediction
from ..tracking import trace
from .base import Optimizer

log = logging.getLogger(__name__)

TraceEntry = tuple[Any, dict[str, Any], Any]  # (predictor, inputs, prediction), as trace() records them


@dataclass
class FailedPrediction:
    """What a traced call produced when its reply did not parse (or, with ``capture_crashes``, when the
    program raised): the reply's text and the score it earns (DSPy's)."""

    completion_text: str
    format_reward: float | None = None


class TraceData(TypedDict, total=False):
    example_ind: int
    example: Example
    prediction: Prediction | FailedPrediction
    trace: list[TraceEntry]
    score: Any


def bootstrap_trace_data(
    program: Module,
    dataset: Sequence[Example],
    metric: Callable[..., Any] | None = None,
    num_threads: int | None = None,
    raise_on_error: bool = True,
    capture_failed_parses: bool = False,
    failure_score: float = 0,
    format_failure_score: float = -1,
    log_format_failures: bool = False,
    callback_metadata: dict[str, Any] | None = None,
    capture_crashes: bool = False,
) -> list[TraceData]:
    """DSPy's ``bootstrap_trace_data``: per example (in dataset order) a dict of ``example_ind``,
    ``example``, ``prediction``, ``trace`` and, with a metric, ``score`` (the metric's value; a reply that
    did not parse scores ``format_failure_score``). An example that raised is an error when
    ``raise_on_error`` (after all ran, as DSPy's Evaluate lets every example run), else left out.
    ``capture_failed_parses`` and ``callback_metadata`` are accepted as DSPy accepts them, to no effect
    (DSPy captures parse failures either way)."""
    return run_sync(
        abootstrap_trace_data(
            program,
            dataset,
            metric,
            num_threads,
            raise_on_error=raise_on_error,
            failure_score=failure_score,
            format_failure_score=format_failure_score,
            log_format_failures=log_format_failures,
            capture_crashes=capture_crashes,
        )
    )


async def abootstrap_trace_data(
    program: Module,
    dataset: Sequence[Example],
    metric: Callable[..., Any] | None = None,
    num_threads: int | None = None,
    *,
    raise_on_error: bool = True,
    failure_score: float = 0,
    format_failure_score: float = -1,
    log_format_failures: bool = False,
    capture_crashes: bool = False,
) -> list[TraceData]:
    """``bootstrap_trace_data`` on the caller's event loop."""
    slots = asyncio.Semaphore(num_threads or _settings.get("num_threads") or 1)

    async def one(index: int, example: Example) -> TraceData | BaseException:
        async with slots:
            try:
                prediction, calls = await traced_run(
                    program, example, format_failure_score, log_format_failures, capture_crashes
                )
                record: TraceData = {"example": example, "prediction": prediction, "trace": calls}
                record["example_ind"] = index
                if metric is not None:
                    record["score"] = await score_of(metric, example, prediction, format_failure_score)
                return record
            except Exception as exc:  # noqa: BLE001 - reported below, once every example ran (DSPy's Evaluate)
                log.error("bootstrap_trace_data: example %d failed: %s: %s", index, type(exc).__name__, exc)
                return exc

    outcomes = await asyncio.gather(*(one(i, example) for i, example in enumerate(dataset)))
    data: list[TraceData] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            if raise_on_error:
                raise RuntimeError(
                    f"bootstrap_trace_data: example {index} failed ({type(outcome).__name__}: {outcome}); "
                    "pass raise_on_error=False to leave failed examples out"
                ) from outcome
            continue
        data.append(outcome)
    return data


async def traced_run(
    program: Module, example: Example, format_failure_score: float, log_format_failures: bool, capture_crashes: bool
) -> tuple[Prediction | FailedPrediction, list[TraceEntry]]:
    """The program's prediction for one example and its trace; a reply that did not parse is a
    FailedPrediction at the end of the trace, under the predictor whose output failed (DSPy's)."""
    inputs = example.inputs().to_dict()
    with trace() as calls:
        try:
            return await program.acall(**inputs), list(calls)
        except AdapterParseError as exc:
            failed = FailedPrediction(completion_text=exc.raw, format_reward=format_failure_score)
            if log_format_failures:
                log.warning(
                    "Failed to parse output for example. This is likely due to the LLM response not following "
                    "the adapter's formatting."
                )
            return failed, [*calls, (failed_predictor(program, exc, calls), inputs, failed)]
        except LMError:
            raise
        except Exception as exc:
            if not capture_crashes:
                raise
            log.warning("Program raised on an example; capturing it as a failed prediction: %s: %s", type(exc), exc)
            return FailedPrediction(completion_text=f"{type(exc).__name__}: {exc}"), list(calls)


def failed_predictor(program: Module, exc: AdapterParseError, calls: Sequence[TraceEntry]) -> Predict:
    """The predictor whose reply failed to parse: DSPy matches the error's signature; dsr's error names the
    field, so it is the first predictor with that output field that has not answered yet in this run."""
    candidates = [p for p in program.predictors() if exc.field is None or exc.field in p.signature.output_fields]
    answered = {id(entry[0]) for entry in calls}
    found = next((p for p in candidates if id(p) not in answered), candidates[0] if candidates else None)
    if found is None:
        raise ValueError(f"Failed to find the predictor for the failed output field {exc.field!r}") from exc
    return found


async def score_of(metric: Callable[..., Any], example: Example, prediction: Any, format_failure_score: float) -> Any:
    """DSPy's wrapped metric: a FailedPrediction scores its format reward, anything else what the metric
    says (called as Evaluate calls it, without a trace)."""
    if isinstance(prediction, FailedPrediction):
        return prediction.format_reward or format_failure_score
    return await call_metric(metric, example, prediction)


# -- the optimizer ---------------------------------------------------------------------------------------------


def convert_to_lm_dict(arg: Any) -> dict[Any, Any]:
    """DSPy's rule: a dict keyed by LMs is per LM; anything else is the value for every LM."""
    if arg and isinstance(arg, dict) and all(isinstance(k, BaseLM) for k in arg):
        return arg
    return defaultdict(lambda: arg)


def build_call_data_from_trace(
    trace: list[TraceEntry], pred_ind: int, adapter: Any, exclude_demos: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """One training record: the messages of trace entry ``pred_ind`` (its predictor's signature and demos,
    its inputs) and its outputs as the assistant's reply."""
    pred, inputs, outputs = trace[pred_ind]
    demos = [] if exclude_demos else [dict(_as_mapping(d)) for d in pred.demos]
    return adapter.format_finetune_data(signature=pred.signature, demos=demos, inputs=inputs, outputs=outputs)


def check_predictor_lms(program: Module) -> None:
    """BootstrapFinetune's error for a predictor without an LM (DSPy's), raised before anything is
    bootstrapped rather than after, as DSPy does."""
    for pred_ind, (name, pred) in enumerate(program.named_predictors()):
        if pred.lm is None:
            raise ValueError(
                f"Predictor {pred_ind} ({name!r}) does not have an LM assigned. "
                "Please ensure the module's predictors have their LM set before fine-tuning. "
                "You can set it using: your_module.set_lm(your_lm)"
            )


def assert_structural_equivalency(program1: Module, program2: Module) -> None:
    """The teacher must have the student's predictors, by name and in order (DSPy's messages)."""
    named1, named2 = program1.named_predictors(), program2.named_predictors()
    if len(named1) != len(named2):
        raise ValueError(
            "Structurally equivalent programs must have the same number of predictors. The number of predictors "
            f"for the two modules do not match: {len(named1)} != {len(named2)}"
        )
    for ind, ((name1, _), (name2, _)) in enumerate(zip(named1, named2, strict=True)):
        if name1 != name2:
            raise ValueError(
                "Program predictor names must match at corresponding indices for structural equivalency. The "
                f"predictor names for the programs do not match at index {ind}: '{name1}' != '{name2}'"
            )


def assert_no_shared_predictor(program1: Module, program2: Module) -> None:
    id_to_name = {id(p): n for n, p in program1.named_predictors()}
    shared = [id_to_name[id(p)] for _, p in program2.named_predictors() if id(p) in id_to_name]
    if shared:
        raise ValueError(f"The programs share the following predictor(s) with each other: {', '.join(shared)}")


def prepare_teacher(student: Module, teacher: Module | None = None) -> Module:
    """The student when no teacher is given; else the teacher, once it is checked against the student."""
    if teacher is None:
        return student
    assert_structural_equivalency(student, teacher)
    assert_no_shared_predictor(student, teacher)
    return teacher


class BootstrapFinetune(Optimizer):
    """DSPy's ``BootstrapFinetune(metric, multitask, train_kwargs, adapter, exclude_demos, num_threads)``
    and ``compile(student, trainset, teacher=None)``. ``train_kwargs`` and ``adapter`` are one value for
    every LM, or a dict keyed by LM; ``teacher`` may be a list of teachers (their traces are pooled)."""

    name = "BootstrapFinetune"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        multitask: bool = True,
        train_kwargs: dict[Any, Any] | None = None,
        adapter: Any = None,
        exclude_demos: bool = False,
        num_threads: int | None = None,
    ) -> None:
        self.metric = metric
        self.multitask = multitask
        self.train_kwargs: dict[Any, Any] = convert_to_lm_dict(train_kwargs or {})
        self.adapter: dict[Any, Any] = convert_to_lm_dict(adapter)
        self.exclude_demos = exclude_demos
        self.num_threads = num_threads

    def init_state(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.name} is not an ask/tell optimizer (fine-tuning jobs are not work items): use compile")

    ask = tell = init_state

    def compile(  # type: ignore[override]
        self, student: Module, trainset: Sequence[Example], teacher: Module | list[Module] | None = None
    ) -> Module:
        """Fine-tune the student's LMs on the teacher's accepted traces; the student, with its predictors'
        LMs replaced by the fine-tuned ones (changed in place and returned, as DSPy does)."""
        check_predictor_lms(student)
        teachers = [prepare_teacher(student, t) for t in (teacher if isinstance(teacher, list) else [teacher])]
        num_threads = self.num_threads or _settings.get("num_threads")
        trace_data: list[TraceData] = []
        for t in teachers:
            trace_data += bootstrap_trace_data(program=t, dataset=trainset, metric=self.metric, num_threads=num_threads)
        key_to_data = self._finetune_requests(student, trace_data)
        if len(key_to_data) > num_threads:
            raise ValueError(
                "BootstrapFinetune requires `num_threads` to be bigger than or equal to the number of fine-tuning "
                f"jobs. There are {len(key_to_data)} fine-tuning jobs to start, but the number of threads is: "
                f"{num_threads}! With multitask=False there is one job per predictor; with multitask=True one "
                "per distinct LM of the student's predictors."
            )
        log.info("%d fine-tuning job(s) to start", len(key_to_data))
        key_to_lm = self.finetune_lms(key_to_data)
        for pred_ind, pred in enumerate(student.predictors()):
            pred.lm = key_to_lm[(pred.lm, None if self.multitask else pred_ind)]
            pred.demos = [] if self.exclude_demos else pred.demos
        student._compiled = True
        return student

    def _finetune_requests(self, student: Module, trace_data: list[TraceData]) -> dict[tuple[Any, int | None], Any]:
        """Per training key (the LM, and the predictor's index unless multitask): what ``lm.finetune`` gets."""
        key_to_data: dict[tuple[Any, int | None], dict[str, Any]] = {}
        for pred_ind, pred in enumerate(student.predictors()):
            data_pred_ind = None if self.multitask else pred_ind
            key = (pred.lm, data_pred_ind)
            if key not in key_to_data:
                train_data, data_format = self._prepare_finetune_data(trace_data, pred.lm, data_pred_ind)
                log.info("Using %d data points for fine-tuning the model: %s", len(train_data), pred.lm.model)
                key_to_data[key] = {
                    "lm": pred.lm,
                    "train_data": train_data,
                    "train_data_format": data_format,
                    "train_kwargs": self.train_kwargs[pred.lm],
                }
        return key_to_data

    @staticmethod
    def finetune_lms(finetune_dict: dict[Any, dict[str, Any]]) -> dict[Any, Any]:
        """Start every job, then wait for each: key -> fine-tuned LM. A failed job's error is raised."""
        key_to_job = {}
        for key, kwargs in finetune_dict.items():
            kwargs = dict(kwargs)
            lm = kwargs.pop("lm")
            key_to_job[key] = lm.finetune(**kwargs)
        key_to_lm = {}
        for ind, (key, job) in enumerate(key_to_job.items()):
            key_to_lm[key] = job.result()
            log.info("Job %d/%d is done", ind + 1, len(key_to_job))
        return key_to_lm

    def _prepare_finetune_data(
        self, trace_data: list[TraceData], lm: Any, pred_ind: int | None = None
    ) -> tuple[list[dict[str, Any]], Any]:
        """DSPy's training records: the traces the metric accepted (all of them without a metric), each call
        at trace position ``pred_ind`` (every call when None) formatted by the LM's adapter, shuffled by
        ``random.Random(0)``."""
        from ..lm.finetune import infer_data_format

        if self.metric:
            log.info("Collected data for %d examples", len(trace_data))
            trace_data = [d for d in trace_data if d["score"]]
            log.info("After filtering with the metric, %d examples remain", len(trace_data))
        adapter = adapter_for(lm, self.adapter[lm])
        data_format = infer_data_format(adapter)
        data = []
        for item in trace_data:
            for trace_pred_ind, entry in enumerate(item["trace"]):
                if isinstance(entry[2], FailedPrediction):
                    continue  # a reply that did not parse has no outputs to train on
                if pred_ind is None or trace_pred_ind == pred_ind:
                    data.append(build_call_data_from_trace(item["trace"], trace_pred_ind, adapter, self.exclude_demos))
        random.Random(0).shuffle(data)
        return data, data_format


# -- BetterTogether ------------------------------------------------------------------------------------------------


def assert_all_predictors_have_lms(program: Module, role: str = "program") -> None:
    """DSPy's check that every predictor carries an LM (BetterTogether's message)."""
    missing = [name for name, pred in program.named_predictors() if not pred.lm]
    if missing:
        raise ValueError(
            f"The {role} program must have a language model set on every predictor, but these have none: "
            f"{missing}. Assign an LM to them; `{role}.set_lm(lm)` sets every predictor and overwrites LMs that "
            "are already set."
        )


class BetterTogether(Optimizer):
    """DSPy's ``BetterTogether(metric, **optimizers)``: ``compile(student, trainset=..., strategy="p -> w -> p")``
    runs the named optimizers one after another on the student (``p``: BootstrapFewShotWithRandomSearch and
    ``w``: BootstrapFinetune by default), scores each result on the validation set (given, else the first
    ``valset_ratio`` of the trainset) and returns the best (with no validation set, the last), carrying
    ``candidate_programs`` (best first) and ``flag_compilation_error_occurred`` (a step raised: the run stopped
    there). Like BootstrapFinetune it is driven in process, not an ask/tell machine. A step's program keeps
    the live LMs it had: an optimizer that rebuilds LMs from saved state gets the originals back."""

    name = "BetterTogether"
    STRAT_SEP = " -> "

    def __init__(self, metric: Callable[..., Any], **optimizers: Any) -> None:
        from .random_search import BootstrapFewShotWithRandomSearch

        self.metric = metric
        if not optimizers:
            optimizers = {"p": BootstrapFewShotWithRandomSearch(metric=metric), "w": BootstrapFinetune(metric=metric)}
        for key, optimizer in optimizers.items():
            if not isinstance(optimizer, Optimizer):
                raise TypeError(f"Optimizer '{key}' must be a Teleprompter, got {type(optimizer).__name__}")
        self.optimizers: dict[str, Optimizer] = optimizers

    init_state = ask = tell = BootstrapFinetune.init_state

    def compile(  # type: ignore[override]
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | list[Module] | None = None,
        valset: Sequence[Example] | None = None,
        num_threads: int | None = None,
        max_errors: int | None = None,
        provide_traceback: bool | None = None,
        seed: int | None = None,
        valset_ratio: float = 0.1,
        shuffle_trainset_between_steps: bool = True,
        strategy: str = "p -> w -> p",
        optimizer_compile_args: dict[str, dict[str, Any]] | None = None,
    ) -> Module:
        if getattr(student, "_compiled", False):
            raise ValueError("The student program should not be compiled.")
        assert_all_predictors_have_lms(student, role="student")
        teachers = None
        if teacher:
            teachers = [prepare_teacher(student, t) for t in (teacher if isinstance(teacher, list) else [teacher])]
        train, val = self._split(trainset, valset, valset_ratio)
        steps = self._parse_strategy(strategy)
        compile_args = self._check_compile_args(optimizer_compile_args or {}, teachers)
        evaluate = self._evaluator(val, num_threads, max_errors, provide_traceback)
        best = self._run_strategies(
            student, train, teachers, val, steps, shuffle_trainset_between_steps, seed, evaluate, compile_args
        )
        best._compiled = True
        return best

    @staticmethod
    def _split(
        trainset: Sequence[Example], valset: Sequence[Example] | None, valset_ratio: float
    ) -> tuple[list[Example], list[Example] | None]:
        """DSPy's: the given valset, else the first ``valset_ratio`` of the trainset (0: no validation)."""
        if not trainset:
            raise ValueError("trainset cannot be empty")
        if valset_ratio < 0 or valset_ratio >= 1:
            raise ValueError(f"valset_ratio must be in range [0, 1), got {valset_ratio}")
        train = list(trainset)
        if valset:
            return train, list(valset)
        if valset_ratio == 0:
            return train, None
        cut = int(valset_ratio * len(train))
        return train[cut:], train[:cut]

    def _parse_strategy(self, strategy: str) -> list[str]:
        if not strategy or not strategy.strip():
            raise ValueError("strategy cannot be empty")
        steps = strategy.split(self.STRAT_SEP)
        invalid = [s for s in steps if s not in self.optimizers]
        if invalid:
            raise ValueError(
                f"Strategy contains invalid optimizer keys: {invalid}. Valid keys are: {list(self.optimizers)}"
            )
        return steps

    def _check_compile_args(
        self, compile_args: dict[str, dict[str, Any]], teachers: list[Module] | None
    ) -> dict[str, dict[str, Any]]:
        """DSPy's checks: known optimizer keys, no ``student``, only what each ``compile`` takes (anything, for
        one that takes ``**options``: it checks them itself), no teacher for GEPA."""
        import inspect

        for key, args in compile_args.items():
            if key not in self.optimizers:
                raise ValueError(f"Invalid optimizer key '{key}'. Valid keys are: {list(self.optimizers)}")
            if "student" in args:
                raise ValueError(
                    f"'student' is not allowed in optimizer_compile_args for optimizer '{key}'. "
                    "The same student is used throughout compilation."
                )
            optimizer = self.optimizers[key]
            params = inspect.signature(optimizer.compile).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()) and set(args) - set(params):
                raise ValueError(
                    f"Invalid compile arguments for optimizer '{key}': {sorted(set(args) - set(params))}. "
                    f"{type(optimizer).__name__}.compile() accepts: {list(params)}"
                )
            if optimizer.name == "GEPA" and teachers is not None:
                raise ValueError("GEPA does not accept a teacher argument. Please remove the teacher argument.")
        return compile_args

    def _evaluator(
        self, valset: list[Example] | None, num_threads: int | None, max_errors: int | None, traceback: bool | None
    ) -> Callable[[Module], float | None]:
        """The validation score of a program (None without a validation set; 0 when evaluating raised)."""
        from ..evaluate import Evaluate
        from .base import effective_max_errors

        if not valset:
            return lambda program: None
        evaluate = Evaluate(
            devset=valset,
            metric=self.metric,
            num_threads=num_threads,
            max_errors=effective_max_errors(max_errors),
            provide_traceback=traceback,
            display_progress=False,
        )

        def score(program: Module) -> float | None:
            try:
                return float(evaluate(program).score)
            except Exception:  # noqa: BLE001 - DSPy's eval_candidate_program: a failed evaluation scores 0
                log.error("An exception occurred during evaluation", exc_info=True)
                return 0.0

        return score

    def _run_strategies(
        self,
        student: Module,
        trainset: list[Example],
        teachers: list[Module] | None,
        valset: list[Example] | None,
        steps: list[str],
        shuffle: bool,
        seed: int | None,
        evaluate: Callable[[Module], float | None],
        compile_args: dict[str, dict[str, Any]],
    ) -> Module:
        rng = random.Random(seed)
        candidates = [{"score": evaluate(student), "program": student.deepcopy(), "strategy": ""}]
        failed = False
        for ind, step in enumerate(steps):
            strategy = self.STRAT_SEP.join(steps[: ind + 1])
            try:
                if shuffle:
                    rng.shuffle(trainset)
                student = self._run_step(
                    self.optimizers[step], student, teachers, trainset, valset, compile_args.get(step, {})
                )
                candidates.append({"score": evaluate(student), "program": student.deepcopy(), "strategy": strategy})
            except Exception as exc:  # noqa: BLE001 - DSPy stops at a failed step and keeps the best so far
                failed = True
                log.error("Step %d/%d failed with error: %s: %s", ind + 1, len(steps), type(exc).__name__, exc)
                log.error("Stopping optimization early; returning the best of %d candidate(s).", len(candidates))
                break
        ranked = sorted(
            enumerate(candidates),
            key=lambda pair: (pair[1]["score"] if pair[1]["score"] is not None else float("-inf"), -pair[0]),
            reverse=True,
        )
        ordered = [candidate for _, candidate in ranked]
        best = candidates[-1] if not valset else ordered[0]
        program = best["program"]
        program.candidate_programs = ordered
        program.flag_compilation_error_occurred = failed
        return program

    @staticmethod
    def _run_step(
        optimizer: Optimizer,
        student: Module,
        teachers: list[Module] | None,
        trainset: list[Example],
        valset: list[Example] | None,
        compile_args: dict[str, Any],
    ) -> Module:
        """One optimizer's compile, given what it takes of trainset/teacher/valset; the result keeps the
        student's live LMs (and gets them back where the optimizer dropped one, as DSPy restores them)."""
        import inspect

        from .runner import with_live_lms

        before = [pred.lm for pred in student.predictors()]
        student._compiled = False
        params = inspect.signature(optimizer.compile).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        standard = {"trainset": trainset, "teacher": teachers, "valset": valset}
        args = {k: v for k, v in standard.items() if k in params}
        args.update({k: v for k, v in compile_args.items() if takes_any or k in params})
        result = optimizer.compile(student, **args)
        if not all(pred.lm for pred in result.predictors()):
            log.warning("%s reset predictor LMs; restoring the original LMs.", optimizer.name)
            for pred, lm in zip(result.predictors(), before, strict=False):
                pred.lm = pred.lm or lm
        return with_live_lms(result, [], [lm for lm in before if lm is not None])


__all__ = [
    "BetterTogether",
    "BootstrapFinetune",
    "FailedPrediction",
    "TraceData",
    "abootstrap_trace_data",
    "bootstrap_trace_data",
]
