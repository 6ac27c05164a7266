"""The ask/tell shape every optimizer has: the ``Optimizer`` base, the state every optimizer state has, and
the helpers optimizers share.

An optimizer owns no loop: ``ask(state)`` says what must be computed next (bootstrap these training
examples with this teacher, evaluate these candidate programs on these examples, ask the prompt model for
these proposals), the caller computes it anywhere (in process with ``LocalRunner``, or as Prefect tasks
over shards), and ``tell(state, results)`` returns the next state. States are pydantic models that
serialize to JSON: the state is the checkpoint. Programs inside work items and states are program-state
dicts (``Module.dump_state()``), never objects.

The work items and their outcomes live in ``work.py``, ``LocalRunner`` in ``runner.py``; both are
importable from here as before.
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from .._async import run_sync
from ..evaluate import _setting
from ..modules.module import Module
from ..primitives import Example
from .runner import LocalRunner, teacher_lm, with_live_lms  # noqa: F401 - importable from here as before
from .work import (  # noqa: F401 - importable from here as before
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
    Work,
    WorkKey,
)


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


def check_teacher_settings(optimizer: str, teacher_settings: dict[str, Any]) -> None:
    """Warn about teacher settings dsr's settings do not have (DSPy's ``trace`` and such)."""
    from ..settings import _KNOWN

    for key in teacher_settings:
        if key not in _KNOWN:
            ignored(optimizer, f"teacher_settings[{key!r}]", f"dsr's settings are {', '.join(sorted(_KNOWN))}")


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
    variadic = {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}
    named = [name for name, p in list(signature.parameters.items())[1:] if p.kind not in variadic]

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        values = {k: bound.arguments[k] for k in named if k in bound.arguments}
        checked, problems = parameter_problems(init, values)
        if problems:
            details = "; ".join(f"{name}: {message}" for name, message in problems)
            raise ValueError(f"{type(self).__name__}: invalid parameter(s): {details}")
        bound.arguments.update(checked)  # *args and **kwargs pass through as they were given
        init(*bound.args, **bound.kwargs)

    return wrapper
