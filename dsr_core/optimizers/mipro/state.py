"""MIPROv2's state: the demo-set candidates, the dataset summary, the instruction proposals and the trials.

Everything ``ask`` and ``tell`` need is here, as JSON: the state is the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from ..base import BootstrapOutcome, OptimizerState, TrialRecord
from ..bootstrap import BootstrapState

NO_TASK_DEMOS = "No task demos provided."


class DemoSet(BaseModel):
    """A demo-set candidate: its bootstrap machine while it runs, then every predictor's demos."""

    seed: int  # DSPy's numbering: -3 zero-shot, -2 labeled, -1 unshuffled bootstrap, 0.. shuffled bootstraps
    kind: Literal["zero-shot", "labeled", "bootstrap"]
    max_bootstrapped_demos: int = 0
    bootstrap: BootstrapState | None = None
    demos: dict[str, list[dict[str, Any]]] | None = None
    augmented: dict[str, int] = {}  # per predictor, how many leading demos were bootstrapped


class DatasetSummary(BaseModel):
    """DSPy's ``create_dataset_summary``, one prompt-model call per step."""

    batches: list[str]  # the training examples it shows, batch by batch, rendered as DSPy renders them
    shown: int = 0  # batches described so far
    observations: str = ""
    skips: int = 0  # refinements that answered COMPLETE
    refining: bool = True
    text: str | None = None  # the summary; None if it could not be made (the proposer then goes without)
    done: bool = False


class Proposal(BaseModel):
    """One instruction proposal: for predictor ``predictor``, grounded in demo set ``demo_set``."""

    predictor: int
    demo_set: int
    tip: str | None  # None: no tip
    rollout: str
    task_demos: str = NO_TASK_DEMOS
    program_description: str | None = None
    module: str | None = None  # as the proposer names it, once the program is described
    module_description: str | None = None
    instruction: str | None = None


class Trial(TrialRecord):
    """One evaluation of a choice; ``number`` is also its number in the Optuna study."""

    kind: Literal["baseline", "minibatch", "full"]
    params: dict[str, int]  # DSPy's Optuna parameters: "{i}_predictor_instruction", "{i}_predictor_demos"
    n_examples: int
    minibatch: list[int] = []  # minibatch trials: positions in ``val_indices``
    score: float | None = None  # 0-100; set for every trial in the state (None only while being planned)
    errors: int = 0


class MiproState(OptimizerState):
    phase: Literal["bootstrap", "propose", "trials", "done"] = "bootstrap"
    program: dict[str, Any]  # the program as given (the baseline)
    program_code: str  # what the proposer is shown as PROGRAM CODE; "" when it is not program-aware
    modules: list[str]  # per predictor, as DSPy names it to the proposer: "Predict(question) -> answer"
    val_split: Literal["train", "val"]
    val_indices: list[int]  # the validation examples of that split (DSPy's subsample under ``auto``)
    num_trials: int
    minibatch: bool
    demo_sets: list[DemoSet]
    bootstrap_outcomes: dict[int, BootstrapOutcome] = {}  # per training example, for every bootstrap
    summary: DatasetSummary | None = None  # None: not data-aware
    proposals: list[Proposal] = []
    instructions: list[list[str]] = []  # per predictor, once proposed; candidate 0 is the original
    trials: list[Trial] = []  # every finished trial, in order; trials[i].number == i
    best_trial: int | None = None

    @property
    def current_phase(self) -> str:
        return self.phase

    @property
    def recorded_trials(self) -> Sequence[Trial]:
        return self.trials
