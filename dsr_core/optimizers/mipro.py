"""MIPROv2 as an ask/tell machine: DSPy 3.x's algorithm and defaults, one small step per ``tell``.

``state.phase`` goes through:

- ``bootstrap``: the demo-set candidates of DSPy's ``create_n_fewshot_demo_sets``: zero-shot, labeled
  demos, an unshuffled bootstrap, then bootstraps over seeded shuffles of the training set with a seeded
  number of demos (1..max_bootstrapped_demos). Each bootstrap is a BootstrapFewShot machine and all of them
  advance together, a batch each per step. They share one teacher (the student with the same labeled
  demos), so one outcome per training example serves every candidate: an example is bootstrapped once.
  The dataset summary (below) is built at the same time: it does not depend on the demos.
- ``propose``: DSPy's grounded proposer. The dataset summary: DatasetDescriptor over the first
  ``view_data_batch_size`` training examples, refined batch by batch (at most ten batches, until five
  answers of COMPLETE), then summarized. For every predictor and demo set: a description of the program
  (from its source code, read at ``init_state``), then of the module, then an instruction from all of it,
  the set's bootstrapped demos and a random tip (DSPy's TIPS). Candidate 0 of each predictor is its
  original instruction. Every prompt-model call is a GenerateWork.
- the baseline: the program as given, evaluated on the whole validation set (recorded as instruction 0 and
  demo set 0) in the first step, next to the first bootstrap batch: it needs nothing proposed.
- ``trials``: each trial evaluates the choice TPE proposes (per predictor: an
  instruction and a demo set) on a minibatch of ``minibatch_size`` validation examples; after every
  ``minibatch_full_eval_steps`` trials and after the last one, the choice with the best minibatch average
  not yet fully evaluated is evaluated on the whole set. With ``minibatch=False`` every trial is a full
  evaluation. The result is the best fully evaluated program; ties keep the earlier one.
- ``done``: ``state.result`` is the program, ``state.best_score`` its validation score (0-100).

The search is a pure function of the state: ``ask`` rebuilds an Optuna study from the trial history kept
in the state (baseline, minibatch and full evaluations, as DSPy feeds its study), with DSPy's
``TPESampler(multivariate=True)`` seeded from the seed and the number of trials so far, and asks it for
the next trials; ``tell`` derives the same trials again and records their scores, so the state holds
finished trials only. Evaluate outcomes are merged per trial, however the caller sharded the work.

Where this differs from DSPy:

- DSPy evaluates the baseline when the search starts; here it runs with the first bootstrap batch (the
  same evaluation, one round earlier on the clock).
- DSPy keeps one sampler for the whole run; here each step seeds a fresh one over the same history: the
  same algorithm, other random draws.
- ``parallel_trials=k`` (DSPy runs one trial at a time): up to k trials are asked at once, with TPE's
  constant liar so they differ (a choice already in the batch is asked for again), and a batch never
  straddles a full evaluation, which therefore comes at DSPy's points.
- The validation subsample, the demo sets' shuffles and sizes, and the tips come from
  ``random.Random(seed)`` in DSPy's order of draws (the same draws as DSPy for the same seed); minibatches
  are drawn per trial from the seed and the trial number.
- The demo sets come from dsr's LabeledFewShot and BootstrapFewShot (see bootstrap.py), with
  ``metric_threshold`` for every bootstrap (DSPy leaves it out of the unshuffled one).
- The program code shown to the proposer is gathered from dsr's modules (``program_source``), as DSPy's
  ``get_dspy_source_code`` gathers it from DSPy's.
- The proposal for demo set 0 is not asked for: DSPy asks and replaces it with the original instruction.
- When every choice evaluated on minibatches has also been fully evaluated, the full evaluation is skipped
  (DSPy evaluates one of them again).
- A failed dataset summary or program/module description falls back as in DSPy; a failed instruction
  proposal raises from ``tell`` (as it raises in DSPy); resuming from the last checkpoint asks again.
- DSPy's constructor and ``compile`` keywords are all accepted: ``compile(student, trainset=...,
  teacher=..., valset=..., num_trials=..., minibatch=..., ...)`` applies the compile-time ones to a copy
  of the optimizer; ``teacher`` and ``teacher_settings`` run the bootstraps, ``num_threads`` is the
  concurrency, ``max_errors`` and ``provide_traceback`` go to every evaluation. ``log_dir``,
  ``track_stats=False``, ``verbose`` and ``requires_permission_to_run`` have no effect (the state, the
  checkpoints and the flows' MLflow runs keep every trial; nothing asks for permission) and say so.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import random
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, NonNegativeFloat, NonNegativeInt, PositiveInt

from ..modules.module import Module
from ..primitives import Example
from .base import (
    BootstrapOutcome,
    BootstrapWork,
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    OptimizerState,
    check_teacher_settings,
    ignored,
    merge_evaluations,
    rng_for,
)
from .bootstrap import BootstrapFewShot, BootstrapState, Optimizer, _base_fields, labeled_demos
from .proposals import TIPS, instruction_signature_key, strip_prefix

AUTO_RUN_SETTINGS = {
    "light": {"n": 6, "val_size": 100},
    "medium": {"n": 12, "val_size": 300},
    "heavy": {"n": 18, "val_size": 1000},
}
BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT = 3  # demos per set when optimizing zero-shot; demos shown to the proposer
MIN_MINIBATCH_SIZE = 50  # under ``auto``, minibatches only for a validation set larger than this
MAX_SUMMARY_BATCHES = 10  # DatasetDescriptor, then at most nine refinements
MAX_COMPLETE_SKIPS = 5  # refinements that answered COMPLETE before the summary stops looking
ASKS_PER_TRIAL = 10  # attempts at a choice not already in the batch, per parallel trial
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


class Trial(BaseModel):
    number: int  # also the candidate id of its EvaluateWork and its number in the Optuna study
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


def num_trials_for(num_predictors: int, num_candidates: int, *, zeroshot: bool) -> int:
    """DSPy's budget: max(2 * variables * log2(candidates), 1.5 * candidates), two variables per predictor
    (instruction and demo set; one when optimizing zero-shot)."""
    variables = num_predictors if zeroshot else 2 * num_predictors
    return int(max(2 * variables * math.log2(num_candidates), 1.5 * num_candidates))


def program_source(program: Module) -> str:
    """What the proposer is shown as the program's code, as DSPy's ``get_dspy_source_code`` gathers it: each
    predictor's signature (its source, or its repr when it was built from a string), the classes of the
    modules the user wrote, the program's own class last. Sources that cannot be read are left out."""

    def source(obj: Any) -> str:
        try:
            return inspect.getsource(obj).strip()
        except (OSError, TypeError):
            return ""

    parts: list[str] = []
    for _, predictor in program.named_predictors():
        parts.append(source(predictor.signature) or repr(predictor.signature))
    modules = [module for _, module in program.named_sub_modules()]
    for module in modules[1:] + modules[:1]:
        if not type(module).__module__.startswith("dsr_core."):  # Predict, ChainOfThought: DSPy leaves them out
            parts.append(source(type(module)))
    return "\n\n".join(dict.fromkeys(part for part in parts if part))


def render_examples(examples: Sequence[Example]) -> str:
    """A list of examples as DSPy shows them to the dataset describer: ``Example({...}) (input_keys={...})``,
    input keys sorted."""

    def one(example: Example) -> str:
        store = {k: v for k, v in example.items() if not k.startswith("dspy_")}
        keys = example.input_keys
        if keys is None:
            shown = "None"
        elif keys:
            shown = "{" + ", ".join(sorted(repr(key) for key in keys)) + "}"
        else:
            shown = "set()"  # an empty Python set
        return f"Example({store!r}) (input_keys={shown})"

    return "[" + ", ".join(one(example) for example in examples) + "]"


def _completion(outcome: GenerateOutcome, field: str) -> str | None:
    """The field of the first completion, or None if the request failed."""
    if outcome.error is not None or not outcome.completions or outcome.completions[0].get(field) is None:
        return None
    return str(outcome.completions[0][field])


def _import_in_background(module: str) -> None:
    """Start importing ``module`` on a daemon thread (Python's import lock makes a later import wait for it)."""
    if module not in sys.modules:
        threading.Thread(target=importlib.import_module, args=(module,), name=f"import-{module}", daemon=True).start()


class MIPROv2(Optimizer):
    name = "MIPROv2"

    def __init__(
        self,
        metric: Callable[..., Any] | None = None,
        prompt_model: Any = None,
        task_model: Any = None,
        teacher_settings: dict[str, Any] | None = None,
        max_bootstrapped_demos: NonNegativeInt = 4,
        max_labeled_demos: NonNegativeInt = 4,
        auto: Literal["light", "medium", "heavy"] | None = "light",
        num_candidates: PositiveInt | None = None,
        num_threads: PositiveInt | None = None,
        max_errors: NonNegativeInt | None = None,
        seed: int = 9,
        init_temperature: NonNegativeFloat = 1.0,
        verbose: bool = False,
        track_stats: bool = True,
        log_dir: str | None = None,
        metric_threshold: float | None = None,
        *,
        teacher: Module | None = None,
        num_trials: PositiveInt | None = None,
        minibatch: bool = True,
        minibatch_size: PositiveInt = 35,
        minibatch_full_eval_steps: PositiveInt = 5,
        program_aware_proposer: bool = True,
        data_aware_proposer: bool = True,
        tip_aware_proposer: bool = True,
        fewshot_aware_proposer: bool = True,
        view_data_batch_size: PositiveInt = 10,
        parallel_trials: PositiveInt = 1,
        provide_traceback: bool | None = None,
    ) -> None:
        if auto not in (None, "light", "medium", "heavy"):
            raise ValueError(f"auto must be 'light', 'medium', 'heavy' or None, not {auto!r}")
        if auto is not None and (num_candidates is not None or num_trials is not None):
            raise ValueError(
                "with auto set, num_candidates and num_trials come from the auto settings; set auto=None to choose them"
            )
        if auto is None and num_candidates is None:
            raise ValueError("with auto=None, give num_candidates (and num_trials, here or to compile)")
        if parallel_trials < 1 or minibatch_full_eval_steps < 1 or minibatch_size < 1:
            raise ValueError("parallel_trials, minibatch_full_eval_steps and minibatch_size must be at least 1")
        for flag, value, default, why in (
            ("verbose", verbose, False, "the steps are logged with logging"),
            (
                "track_stats",
                track_stats,
                True,
                "every trial and its score stay in the state (and the flows' MLflow runs)",
            ),
            ("log_dir", log_dir, None, "the flows checkpoint every step and log the trials to MLflow"),
        ):
            if value != default:
                ignored(self.name, f"{flag}={value!r}", why)
        self.metric = metric
        self.prompt_model = prompt_model
        self.task_model = task_model
        self.teacher_settings = dict(teacher_settings or {})
        self.teacher = teacher
        self.auto = auto
        self.num_candidates = num_candidates
        self.num_trials = num_trials
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.metric_threshold = metric_threshold
        self.init_temperature = init_temperature
        self.verbose = verbose
        self.track_stats = track_stats
        self.log_dir = log_dir
        self.minibatch = minibatch
        self.minibatch_size = minibatch_size
        self.minibatch_full_eval_steps = minibatch_full_eval_steps
        self.program_aware_proposer = program_aware_proposer
        self.data_aware_proposer = data_aware_proposer
        self.tip_aware_proposer = tip_aware_proposer
        self.fewshot_aware_proposer = fewshot_aware_proposer
        self.view_data_batch_size = view_data_batch_size
        self.parallel_trials = parallel_trials
        self.provide_traceback = provide_traceback
        self.seed = seed
        check_teacher_settings(self.name, self.teacher_settings)
        self._check_demos()

    @property
    def zeroshot(self) -> bool:
        return self.max_bootstrapped_demos == 0 and self.max_labeled_demos == 0

    def _check_demos(self) -> None:
        if self.max_bootstrapped_demos == 0 and self.max_labeled_demos > 0:
            raise ValueError(
                "max_bootstrapped_demos=0 needs max_labeled_demos=0 too (zero-shot optimization): "
                "DSPy draws 1..max_bootstrapped_demos demos for each bootstrapped set"
            )

    def configured(self, **options: Any) -> MIPROv2:
        """DSPy's ``compile`` keywords, applied to a copy: ``num_trials``, ``max_bootstrapped_demos``,
        ``max_labeled_demos``, ``seed``, ``minibatch``, ``minibatch_size``, ``minibatch_full_eval_steps``, the
        proposer flags, ``view_data_batch_size``, ``provide_traceback`` and ``requires_permission_to_run``
        (ignored, as DSPy ignores it)."""
        from .base import parameter_problems

        if options.pop("requires_permission_to_run", None) is not None:
            ignored(self.name, "requires_permission_to_run", "nothing asks for permission; DSPy ignores it too")
        compile_time = {
            "num_trials", "max_bootstrapped_demos", "max_labeled_demos", "seed", "minibatch", "minibatch_size",
            "minibatch_full_eval_steps", "program_aware_proposer", "data_aware_proposer", "view_data_batch_size",
            "tip_aware_proposer", "fewshot_aware_proposer", "provide_traceback",
        }  # fmt: skip
        unknown = set(options) - compile_time
        if unknown:
            raise TypeError(f"{self.name}.compile() got unexpected keyword(s): {', '.join(sorted(unknown))}")
        given = {name: value for name, value in options.items() if value is not None}
        checked, problems = parameter_problems(inspect.unwrap(MIPROv2.__init__), given)
        if problems:
            details = "; ".join(f"{name}: {message}" for name, message in problems)
            raise ValueError(f"{self.name}.compile: invalid parameter(s): {details}")
        if self.auto is not None and checked.get("num_trials") is not None:
            raise ValueError(
                "If auto is not None, num_candidates and num_trials cannot be set, since they would be overrided by "
                "the auto settings. Please either set auto to None, or do not specify num_candidates and num_trials."
            )
        optimizer = copy.copy(self)
        for name, value in checked.items():
            setattr(optimizer, name, value)
        optimizer._check_demos()
        return optimizer

    # -- init ------------------------------------------------------------------------------------------------
    def init_state(self, program: Module, trainset: Sequence[Example], valset: Sequence[Example] | None) -> MiproState:
        if not trainset:
            raise ValueError("MIPROv2 needs a non-empty trainset")
        if self.auto is None and self.num_trials is None:
            assert self.num_candidates is not None
            suggested = num_trials_for(len(program.predictors()), self.num_candidates, zeroshot=self.zeroshot)
            raise ValueError(
                f"If auto is None, num_trials must also be provided. Given num_candidates={self.num_candidates}, "
                f"we'd recommend setting num_trials to ~{suggested}."
            )
        program = program.deepcopy()
        if self.task_model is not None:  # DSPy runs the task under the task model: predictors without their own LM
            for predictor in program.predictors():
                predictor.lm = predictor.lm or self.task_model
        val_split: Literal["train", "val"]
        if valset is None:  # DSPy: the last 80% of the trainset (at most 1000 examples) validates
            if len(trainset) < 2:
                raise ValueError("MIPROv2 without a valset needs at least 2 training examples")
            cutoff = len(trainset) - min(1000, max(1, int(len(trainset) * 0.8)))
            train, val_split, val_indices = list(trainset[:cutoff]), "train", list(range(cutoff, len(trainset)))
        else:
            if not valset:
                raise ValueError("MIPROv2 needs a non-empty valset (or None, to split the trainset)")
            train, val_split, val_indices = list(trainset), "val", list(range(len(valset)))

        rng = random.Random(self.seed)  # DSPy's one stream of draws, drawn in its order
        num_predictors = len(program.predictors())
        minibatch, num_trials = self.minibatch, self.num_trials
        num_fewshot = num_instruct = self.num_candidates
        if self.auto is not None:
            settings = AUTO_RUN_SETTINGS[self.auto]
            sample = rng.sample(range(len(val_indices)), min(settings["val_size"], len(val_indices)))
            val_indices = [val_indices[i] for i in sample]
            minibatch = len(val_indices) > MIN_MINIBATCH_SIZE
            num_fewshot = settings["n"]
            # DSPy spends half the candidates on instructions when demos are optimized too
            num_instruct = settings["n"] if self.zeroshot else int(settings["n"] * 0.5)
            num_trials = num_trials_for(num_predictors, settings["n"], zeroshot=self.zeroshot)
        assert num_fewshot is not None and num_instruct is not None and num_trials is not None
        if minibatch and self.minibatch_size > len(val_indices):
            raise ValueError(f"minibatch_size={self.minibatch_size} exceeds the {len(val_indices)} validation examples")

        demo_sets = self._demo_sets(program, train, num_fewshot, rng)
        proposals = self._plan_proposals(num_predictors, min(num_instruct, len(demo_sets)), rng)
        batch = self.view_data_batch_size
        starts = [0, *range(batch, len(train), batch)][:MAX_SUMMARY_BATCHES]
        summary = (
            DatasetSummary(batches=[render_examples(train[b : b + batch]) for b in starts])
            if self.data_aware_proposer and proposals
            else None
        )
        state = MiproState(
            **_base_fields(self.name, self.seed, program, trainset, valset),
            program=program.dump_state(),
            program_code=program_source(program) if self.program_aware_proposer else "",
            modules=[
                f"{type(p).__name__}({', '.join(p.signature.input_fields)}) -> {', '.join(p.signature.output_fields)}"
                for p in program.predictors()
            ],
            val_split=val_split,
            val_indices=val_indices,
            num_trials=num_trials,
            minibatch=minibatch,
            demo_sets=demo_sets,
            summary=summary,
            proposals=proposals,
        )
        self._advance(state)
        return state

    def _bootstrapper(self, max_bootstrapped_demos: int) -> BootstrapFewShot:
        return BootstrapFewShot(
            metric_threshold=self.metric_threshold,
            teacher_settings=self.teacher_settings,
            teacher=self.teacher,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            max_errors=self.max_errors,
            seed=self.seed,
        )

    def _demo_sets(self, program: Module, train: list[Example], count: int, rng: random.Random) -> list[DemoSet]:
        """DSPy's ``create_n_fewshot_demo_sets``: ``count`` sets, its branches and draws."""
        names = [name for name, _ in program.named_predictors()]
        max_bootstrapped = BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT if self.zeroshot else self.max_bootstrapped_demos
        sets = []
        for seed in range(-3, count - 3):
            if seed == -3:
                sets.append(DemoSet(seed=seed, kind="zero-shot", demos={name: [] for name in names}))
            elif seed == -2 and self.max_labeled_demos > 0:
                labeled = labeled_demos(train, self.max_labeled_demos, names)  # DSPy's LabeledFewShot draws
                sets.append(DemoSet(seed=seed, kind="labeled", demos=labeled))
            else:  # DSPy: -1 bootstraps in training order, the others (and -2 without labeled demos) shuffled
                order, size = list(range(len(train))), max_bootstrapped
                if seed != -1:
                    rng.shuffle(order)
                    size = rng.randint(1, max_bootstrapped)
                bootstrap = self._bootstrapper(size).init_state(program, train, None, order=order)
                sets.append(DemoSet(seed=seed, kind="bootstrap", max_bootstrapped_demos=size, bootstrap=bootstrap))
        return sets

    def _plan_proposals(self, num_predictors: int, per_predictor: int, rng: random.Random) -> list[Proposal]:
        """DSPy's proposal loop: per predictor and demo set, a random tip and a rollout id."""
        proposals = []
        for predictor in range(num_predictors):
            for demo_set in range(per_predictor):
                tip = TIPS[rng.choice(list(TIPS))] if self.tip_aware_proposer else ""
                rollout = str(rng.randint(0, 10**9))
                if demo_set > 0:  # the first would be replaced by the original instruction
                    proposals.append(Proposal(predictor=predictor, demo_set=demo_set, tip=tip or None, rollout=rollout))
        return proposals

    def planned_trials(self, state: MiproState) -> int:
        """Evaluations the run makes at most: the baseline, ``num_trials`` trials and, with minibatches, a full
        evaluation after every ``minibatch_full_eval_steps`` trials and after the last (DSPy's count)."""
        full = -(-state.num_trials // self.minibatch_full_eval_steps) if state.minibatch else 0
        return 1 + state.num_trials + full

    # -- ask -------------------------------------------------------------------------------------------------
    def ask(self, state: MiproState) -> list[Any]:
        if state.phase == "done":
            return []
        if state.phase == "trials":
            return [self._evaluation(state, trial) for trial in self._next_trials(state)]
        work: list[Any] = []
        if state.phase == "bootstrap":
            work.append(self._bootstrap_work(state))
        if state.summary is not None and not state.summary.done:
            work.append(self._summary_work(state.summary))
        if state.phase == "propose":
            # optuna is needed from the first trial on; its import (~0.3 s of CPU) fits in this phase's idle
            # time, which is mostly waiting for the dataset summary's one-at-a-time calls
            _import_in_background("optuna")
            for number, proposal in enumerate(state.proposals):
                item = self._proposal_work(state, number, proposal)
                if item is not None:
                    work.append(item)
        if not state.trials:  # the baseline depends on nothing proposed: score it while candidates are made
            work.append(self._evaluation(state, self._next_trials(state)[0]))
        return work

    def _bootstrap_work(self, state: MiproState) -> BootstrapWork:
        """The next batch of every running bootstrap, less the examples already bootstrapped, as one item (the
        teacher is the same for every set)."""
        batches = [self._next_batch(demo_set) for demo_set in state.demo_sets if demo_set.bootstrap is not None]
        indices = dict.fromkeys(i for batch in batches for i in batch.indices if i not in state.bootstrap_outcomes)
        return BootstrapWork(teacher=batches[0].teacher, indices=list(indices), metric_threshold=self.metric_threshold)

    def _next_batch(self, demo_set: DemoSet) -> BootstrapWork:
        assert demo_set.bootstrap is not None
        (work,) = self._bootstrapper(demo_set.max_bootstrapped_demos).ask(demo_set.bootstrap)
        assert isinstance(work, BootstrapWork)
        return work

    @staticmethod
    def _summary_work(summary: DatasetSummary) -> GenerateWork:
        """The summary's next call: describe the first batch, refine with the next one, or summarize."""
        if summary.shown == 0:
            key, signature, inputs = "summary:0", "dataset_descriptor", {"examples": summary.batches[0]}
        elif summary.refining:
            key, signature = f"summary:{summary.shown}", "dataset_descriptor_with_prior"
            inputs = {"examples": summary.batches[summary.shown], "prior_observations": summary.observations}
        else:
            key, signature, inputs = "summary:final", "observation_summarizer", {"observations": summary.observations}
        return GenerateWork(key=key, signature=signature, inputs=inputs, temperature=1.0)

    def _proposal_work(self, state: MiproState, number: int, proposal: Proposal) -> GenerateWork | None:
        """The proposal's next call: describe the program, then the module, then propose an instruction."""

        def generate(key: str, signature: str, inputs: dict[str, Any]) -> GenerateWork:
            return GenerateWork(
                key=f"{key}:{number}",
                signature=signature,
                inputs=inputs,
                temperature=self.init_temperature,
                rollout=proposal.rollout,
            )

        program_aware = bool(state.program_code)
        described = {"program_code": state.program_code, "program_example": proposal.task_demos}
        if program_aware and proposal.program_description is None:
            return generate("program", "describe_program", described)
        if program_aware and proposal.module_description is None:
            inputs = {**described, "program_description": proposal.program_description, "module": proposal.module}
            return generate("module", "describe_module", inputs)
        if proposal.instruction is not None or (state.summary is not None and not state.summary.done):
            return None
        summary = state.summary.text if state.summary is not None else None
        inputs = {} if summary is None else {"dataset_description": summary}
        if program_aware:
            inputs["program_code"] = state.program_code
            inputs["program_description"] = proposal.program_description
            inputs["module"] = proposal.module
            inputs["module_description"] = proposal.module_description
        inputs["task_demos"] = proposal.task_demos
        name = state.predictor_names[proposal.predictor]
        inputs["basic_instruction"] = state.program[name]["signature"]["instructions"]
        if proposal.tip:
            inputs["tip"] = proposal.tip
        signature = instruction_signature_key(
            use_dataset_summary=summary is not None, program_aware=program_aware, use_tip=bool(proposal.tip)
        )
        return generate("instruction", signature, inputs)

    def _evaluation(self, state: MiproState, trial: Trial) -> EvaluateWork:
        program = state.program if trial.kind == "baseline" else self._candidate(state, trial.params)
        return EvaluateWork(
            candidate=trial.number, program=program, split=state.val_split, indices=self._indices(state, trial)
        )

    @staticmethod
    def _indices(state: MiproState, trial: Trial) -> list[int]:
        if trial.kind == "minibatch":
            return [state.val_indices[position] for position in trial.minibatch]
        return list(state.val_indices)

    def _candidate(self, state: MiproState, params: dict[str, int]) -> dict[str, Any]:
        """The program with each predictor's chosen instruction and (unless zero-shot) demo set."""
        program = copy.deepcopy(state.program)
        for i, name in enumerate(state.predictor_names):
            entry = program[name]
            entry["signature"]["instructions"] = state.instructions[i][params[f"{i}_predictor_instruction"]]
            if not self.zeroshot:
                demos = state.demo_sets[params[f"{i}_predictor_demos"]].demos or {}
                entry["demos"] = copy.deepcopy(demos[name])
        return program

    # -- tell ------------------------------------------------------------------------------------------------
    def tell(self, state: MiproState, results: list[Any]) -> MiproState:
        state = state.model_copy(deep=True)
        if state.phase == "trials":
            self._record_trials(state, results)
            return state
        for result in results:
            if isinstance(result, BootstrapOutcome):
                state.bootstrap_outcomes[result.index] = result
            elif isinstance(result, GenerateOutcome):
                self._record_generation(state, result)
        evaluations = [result for result in results if isinstance(result, EvaluateOutcome)]
        if evaluations:  # the baseline, asked for alongside the first preparation step
            self._record_trials(state, evaluations)
        self._feed_bootstraps(state)
        self._advance(state)
        return state

    def _feed_bootstraps(self, state: MiproState) -> None:
        """Advance every bootstrap machine through each batch whose outcomes are all known."""
        for demo_set in state.demo_sets:
            while demo_set.bootstrap is not None:
                work = self._next_batch(demo_set)
                if any(i not in state.bootstrap_outcomes for i in work.indices):
                    break
                boot = self._bootstrapper(demo_set.max_bootstrapped_demos).tell(
                    demo_set.bootstrap, [state.bootstrap_outcomes[i] for i in work.indices]
                )
                if not boot.done:
                    demo_set.bootstrap = boot
                    continue
                assert boot.result is not None
                demo_set.demos = {name: boot.result[name]["demos"] for name in state.predictor_names}
                demo_set.augmented = {
                    name: min(len(boot.demos.get(name, [])), demo_set.max_bootstrapped_demos)
                    for name in state.predictor_names
                }
                demo_set.bootstrap = None

    def _record_generation(self, state: MiproState, outcome: GenerateOutcome) -> None:
        kind, _, which = outcome.key.partition(":")
        if kind == "summary":
            assert state.summary is not None
            if outcome.key == self._summary_work(state.summary).key:
                self._record_summary(state.summary, outcome)
            return
        proposal = state.proposals[int(which)]
        if kind == "program":
            description = _completion(outcome, "program_description")
            if description is None:  # DSPy goes on without the program's and the module's description
                proposal.program_description, proposal.module = "Not available", "Not provided"
                proposal.module_description = "Not provided"
            else:
                proposal.program_description = strip_prefix(description)
                proposal.module = state.modules[proposal.predictor]
        elif kind == "module":
            proposal.module_description = _completion(outcome, "module_description") or "Not provided"
        elif kind == "instruction":
            instruction = _completion(outcome, "proposed_instruction")
            if instruction is None:
                name = state.predictor_names[proposal.predictor]
                raise RuntimeError(f"MIPROv2: proposing an instruction for {name!r} failed: {outcome.error}")
            proposal.instruction = strip_prefix(instruction)

    @staticmethod
    def _record_summary(summary: DatasetSummary, outcome: GenerateOutcome) -> None:
        if outcome.key == "summary:final":
            text = _completion(outcome, "summary")
            summary.text, summary.done = (strip_prefix(text) if text is not None else None), True
            return
        observations = _completion(outcome, "observations")
        if summary.shown == 0:
            if observations is None:  # DSPy's proposer then goes without a dataset summary
                summary.done = True
                return
            summary.observations = observations
        elif observations is None:  # DSPy summarizes the observations made so far
            summary.refining = False
        elif len(observations) >= 8 and observations[:8].upper() == "COMPLETE":
            summary.skips += 1
            summary.refining = summary.skips < MAX_COMPLETE_SKIPS
        else:
            summary.observations += observations
        summary.shown += 1
        if summary.shown >= len(summary.batches):
            summary.refining = False

    def _advance(self, state: MiproState) -> None:
        """Move to the next phase once the current one has nothing left to ask."""
        if state.phase == "bootstrap" and all(demo_set.demos is not None for demo_set in state.demo_sets):
            state.phase, state.bootstrap_outcomes = "propose", {}
            for proposal in state.proposals:
                proposal.task_demos = self._task_demos(state, proposal)
        summarized = state.summary is None or state.summary.done
        if state.phase == "propose" and summarized and all(p.instruction is not None for p in state.proposals):
            state.instructions = [
                [state.program[name]["signature"]["instructions"]]
                + [p.instruction or "" for p in state.proposals if p.predictor == i]
                for i, name in enumerate(state.predictor_names)
            ]
            state.phase = "trials"

    def _task_demos(self, state: MiproState, proposal: Proposal) -> str:
        """Up to three bootstrapped demos from the proposal's demo set and those after it, formatted as DSPy
        shows them (``Prefix: value`` per field); none for demo set 0 or when not few-shot-aware."""
        if not self.fewshot_aware_proposer or proposal.demo_set == 0:
            return NO_TASK_DEMOS
        name = state.predictor_names[proposal.predictor]
        fields = state.program[name]["signature"]["fields"]
        examples = []
        for demo_set in state.demo_sets[proposal.demo_set :] + state.demo_sets[: proposal.demo_set]:
            for demo in (demo_set.demos or {})[name][: demo_set.augmented.get(name, 0)]:
                examples.append("\n".join(f"{field['prefix']} {demo.get(field['name'])}" for field in fields))
        shown = examples[:BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT]
        return "\n\n".join(shown) + "\n\n" if shown else NO_TASK_DEMOS

    # -- trials ----------------------------------------------------------------------------------------------
    def _next_trials(self, state: MiproState) -> list[Trial]:
        """The trials to evaluate next: the baseline first; a full evaluation when one is due; else the next
        choices TPE proposes (up to ``parallel_trials``, never past a full evaluation); none when done.

        ``ask`` evaluates them and ``tell`` records them under the same numbers: both derive them from the
        state, so the state holds finished trials only."""
        number, val_size = len(state.trials), len(state.val_indices)
        if not state.trials:
            baseline = {name: 0 for name in self._param_names(state)}  # DSPy's record of the default program
            return [Trial(number=0, kind="baseline", params=baseline, n_examples=val_size)]
        full = self._due_full_evaluation(state)
        if full is not None:
            return [Trial(number=number, kind="full", params=full, n_examples=val_size)]
        searched = self._searched(state)
        count = min(self.parallel_trials, state.num_trials - searched)
        if state.minibatch:
            count = min(count, self.minibatch_full_eval_steps - searched % self.minibatch_full_eval_steps)
        trials = []
        for n, params in enumerate(self._sample(state, count) if count > 0 else [], start=number):
            if not state.minibatch:
                trials.append(Trial(number=n, kind="full", params=params, n_examples=val_size))
                continue
            positions = rng_for(state.seed, "minibatch", n).sample(range(val_size), self.minibatch_size)
            trials.append(
                Trial(number=n, kind="minibatch", params=params, n_examples=len(positions), minibatch=positions)
            )
        return trials

    @staticmethod
    def _searched(state: MiproState) -> int:
        """Trials TPE chose so far (the baseline and DSPy's periodic full evaluations aside)."""
        return sum(trial.kind == ("minibatch" if state.minibatch else "full") for trial in state.trials)

    def _due_full_evaluation(self, state: MiproState) -> dict[str, int] | None:
        """After every ``minibatch_full_eval_steps`` minibatch trials and after the last one: the choice to
        evaluate on the whole validation set, if any is left."""
        if not state.minibatch or state.trials[-1].kind != "minibatch":
            return None
        searched = self._searched(state)
        if searched % self.minibatch_full_eval_steps and searched < state.num_trials:
            return None
        return self._best_unevaluated(state)

    def _record_trials(self, state: MiproState, results: list[Any]) -> None:
        merged = merge_evaluations(results)
        for trial in self._next_trials(state):
            expected = sorted(self._indices(state, trial))
            outcome = merged.get((trial.number, state.val_split))
            if outcome is None or outcome.indices != expected:
                covered = len(outcome.indices) if outcome is not None else 0
                raise ValueError(
                    f"MIPROv2: the results for trial {trial.number} cover {covered} rows, not its {len(expected)} examples"
                )
            trial.score, trial.errors = round(100.0 * outcome.mean, 2), outcome.errors  # a percentage, as Evaluate
            state.trials.append(trial)
            if trial.kind != "minibatch" and (state.best_score is None or trial.score > state.best_score):
                state.best_trial, state.best_score = trial.number, trial.score
        if self._searched(state) >= state.num_trials and self._due_full_evaluation(state) is None:
            best = state.trials[state.best_trial or 0]
            state.result = (
                copy.deepcopy(state.program) if best.kind == "baseline" else self._candidate(state, best.params)
            )
            state.phase, state.done = "done", True

    @staticmethod
    def _best_unevaluated(state: MiproState) -> dict[str, int] | None:
        """DSPy's ``get_program_with_highest_avg_score``: the choice with the best mean minibatch score among
        those not fully evaluated yet (the first seen among equals)."""
        scores: dict[tuple[tuple[str, int], ...], list[float]] = {}
        choices: dict[tuple[tuple[str, int], ...], dict[str, int]] = {}
        for trial in state.trials:
            if trial.kind == "minibatch" and trial.score is not None:
                key = tuple(sorted(trial.params.items()))
                scores.setdefault(key, []).append(trial.score)
                choices.setdefault(key, trial.params)
        evaluated = {tuple(sorted(trial.params.items())) for trial in state.trials if trial.kind == "full"}
        ranked = sorted(scores, key=lambda key: sum(scores[key]) / len(scores[key]), reverse=True)  # stable
        return next((choices[key] for key in ranked if key not in evaluated), None)

    def _param_names(self, state: MiproState) -> list[str]:
        """DSPy's Optuna parameter names: per predictor an instruction and (unless zero-shot) a demo set."""
        kinds = ("instruction",) if self.zeroshot else ("instruction", "demos")
        return [f"{i}_predictor_{kind}" for i in range(len(state.predictor_names)) for kind in kinds]

    def _distributions(self, state: MiproState) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        distributions: dict[str, Any] = {}
        for i in range(len(state.predictor_names)):
            distributions[f"{i}_predictor_instruction"] = CategoricalDistribution(range(len(state.instructions[i])))
            if not self.zeroshot:
                distributions[f"{i}_predictor_demos"] = CategoricalDistribution(range(len(state.demo_sets)))
        return distributions

    def _sample(self, state: MiproState, count: int) -> list[dict[str, int]]:
        """Up to ``count`` distinct choices from TPE over the trial history (fewer only if there are not as many)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = self._distributions(state)
        sampler = optuna.samplers.TPESampler(
            seed=rng_for(state.seed, "tpe", len(state.trials)).randrange(2**32),
            multivariate=True,
            constant_liar=self.parallel_trials > 1,  # trials asked but not told count as (bad) results
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for trial in state.trials:
            study.add_trial(
                optuna.trial.create_trial(params=trial.params, distributions=distributions, value=trial.score)
            )
        chosen: list[dict[str, int]] = []
        for _ in range(ASKS_PER_TRIAL * count):
            params = study.ask(distributions).params
            params = {name: int(params[name]) for name in distributions}
            if params not in chosen:
                chosen.append(params)
            if len(chosen) == count:
                break
        return chosen


__all__ = ["MIPROv2", "MiproState", "num_trials_for", "program_source"]
