"""KNNFewShot: DSPy's ``dspy.teleprompt.KNNFewShot``, demos chosen per call from the nearest training examples.

``compile(student)`` returns a copy of the student whose every call first finds the ``k`` training examples
nearest to its inputs (``KNN``), then compiles the student on just those with ``BootstrapFewShot`` (the
keywords given here are its arguments), and runs that compiled program on the inputs: the demos follow the
question. As in DSPy the bootstrap runs at every call (its LM calls are cached like any other).

Two differences, both to keep DSPy's behaviour under dsr's rules. dsr's BootstrapFewShot needs a metric;
without one DSPy keeps every trace, so KNNFewShot gives it one that accepts every trace. And the compiled
program works both ways, ``program(...)`` and ``await program.acall(...)``: its ``aforward`` embeds the query
and bootstraps on the event loop, its ``forward`` runs that synchronously. The copy keeps the student's class
and predictor names, so it saves, loads and optimizes like the student (its state holds no demos: they are
chosen per call).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._async import run_sync
from ..modules.knn import KNN
from ..modules.module import Module
from ..primitives import Example, Prediction
from .base import LocalRunner, effective_max_errors
from .bootstrap import BootstrapFewShot


def accept_every_trace(example: Any, prediction: Any, trace: Any = None) -> bool:
    """DSPy's BootstrapFewShot without a metric keeps every trace; dsr's needs a metric, so this is it."""
    return True


class KNNFewShot:
    """``KNNFewShot(k, trainset, vectorizer, **few_shot_bootstrap_args)``; ``compile(student, teacher=None)``.

    ``vectorizer`` is an ``Embedder`` (any callable from a list of strings to vectors works). The training
    examples are embedded now, once; ``few_shot_bootstrap_args`` (``metric=``, ``max_bootstrapped_demos=``,
    ``max_labeled_demos=``, ...) are checked now too, so a wrong one fails here rather than at the first call.
    It is no ask/tell machine (its work happens per call, not at compile time), so, like ``Ensemble``, it is
    no ``Optimizer`` subclass.
    """

    name = "KNNFewShot"

    def __init__(self, k: int, trainset: Sequence[Example], vectorizer: Any, **few_shot_bootstrap_args: Any) -> None:
        BootstrapFewShot(**few_shot_bootstrap_args)  # raises for an argument BootstrapFewShot does not take
        self.KNN = KNN(k, trainset, vectorizer=vectorizer)
        self.few_shot_bootstrap_args = dict(few_shot_bootstrap_args)

    def compile(self, student: Module, *, teacher: Module | None = None, **options: Any) -> Module:
        """The student, answering each call with the demos BootstrapFewShot finds among its nearest examples."""
        if options:
            raise TypeError(
                f"{self.name}.compile() got unexpected keyword(s): {', '.join(sorted(options))} (it takes the "
                "student and teacher=; the trainset was given to KNNFewShot(...))"
            )
        compiled = student.reset_copy()

        async def aforward(*args: Any, **kwargs: Any) -> Prediction:
            if args:
                raise TypeError(
                    f"{self.name}: a compiled program takes its inputs as keywords, got {len(args)} positional"
                )
            neighbours = await self.KNN.acall(**kwargs)
            program = await self._bootstrapped(student, teacher, neighbours)
            return await program.acall(**kwargs)

        def forward(*args: Any, **kwargs: Any) -> Prediction:
            return run_sync(aforward(*args, **kwargs))

        # instance attributes, as DSPy patches ``forward``: Module's dispatch calls ``self.forward`` and
        # ``self.aforward``, so the copy keeps the student's class, predictors and names
        compiled.aforward = aforward  # type: ignore[method-assign]
        compiled.forward = forward  # type: ignore[method-assign]
        return compiled

    async def _bootstrapped(self, student: Module, teacher: Module | None, trainset: list[Example]) -> Module:
        """BootstrapFewShot's compile on ``trainset``, driven on the running loop (its ``compile`` is synchronous)."""
        optimizer = BootstrapFewShot(**self.few_shot_bootstrap_args)
        if teacher is not None:
            optimizer.teacher = teacher
        state = optimizer.init_state(student, trainset, None)
        runner = LocalRunner(
            student,
            trainset,
            None,
            optimizer.metric or accept_every_trace,
            teacher=optimizer.teacher,
            teacher_settings=optimizer.teacher_settings,
            max_errors=effective_max_errors(optimizer.max_errors),
        )
        while not state.done:
            state = optimizer.tell(state, await runner.run(optimizer.ask(state)))
        return optimizer.finish(student, state)


__all__ = ["KNNFewShot", "accept_every_trace"]
