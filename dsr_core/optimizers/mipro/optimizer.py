"""The MIPROv2 optimizer: its parameters, its phases, and the demo-set candidates it bootstraps.

``ask`` and ``tell`` move the state through its phases (see the package's docstring); the grounded proposer
(proposer.py) makes the instruction candidates and the search (search.py) the trials.
"""

from __future__ import annotations

import copy
import inspect
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt

from ...modules.module import Module
from ...primitives import Example
from ..base import (
    BootstrapOutcome,
    BootstrapWork,
    EvaluateOutcome,
    GenerateOutcome,
    Optimizer,
    base_fields,
    check_teacher_settings,
    ignored,
    parameter_problems,
)
from ..bootstrap import BootstrapFewShot, labeled_demos
from .proposer import (
    BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT,
    GroundedProposer,
    dataset_summary,
    module_names,
    program_source,
)
from .search import TrialSearch, num_trials_for, quiet_optuna
from .state import DemoSet, MiproState

AUTO_RUN_SETTINGS = {
    "light": {"n": 6, "val_size": 100},
    "medium": {"n": 12, "val_size": 300},
    "heavy": {"n": 18, "val_size": 1000},
}
MIN_MINIBATCH_SIZE = 50  # under ``auto``, minibatches only for a validation set larger than this


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
        if verbose:
            ignored(self.name, f"verbose={verbose!r}", "the steps are logged with logging")
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
        quiet_optuna()

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
        proposals = self._proposer().plan(num_predictors, min(num_instruct, len(demo_sets)), rng)
        summary = dataset_summary(train, self.view_data_batch_size) if self.data_aware_proposer and proposals else None
        state = MiproState(
            **base_fields(self.name, self.seed, program, trainset, valset),
            program=program.dump_state(),
            program_code=program_source(program) if self.program_aware_proposer else "",
            modules=module_names(program),
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

    def _proposer(self) -> GroundedProposer:
        return GroundedProposer(
            temperature=self.init_temperature,
            tip_aware=self.tip_aware_proposer,
            fewshot_aware=self.fewshot_aware_proposer,
        )

    def finish(self, student: Module, state: MiproState) -> Module:
        """The best program; with ``track_stats`` (DSPy's default), DSPy's trial statistics on it too; with
        ``log_dir``, every evaluated program saved there as DSPy saves them."""
        from .stats import attach_trial_stats, save_trial_programs

        compiled = super().finish(student, state)
        paths = None
        if self.log_dir is not None:
            paths = save_trial_programs(student, state, self._search(), self.log_dir, self.minibatch)
        if self.track_stats:
            attach_trial_stats(compiled, student, state, self._search(), paths)
        return compiled

    def best_so_far(self, state: MiproState) -> dict[str, Any] | None:
        """The best fully evaluated trial so far (the baseline until another one beats it)."""
        if state.result is not None or state.best_trial is None:
            return state.result
        best = state.trials[state.best_trial]
        return state.program if best.kind == "baseline" else self._search().candidate(state, best.params)

    def _search(self) -> TrialSearch:
        return TrialSearch(
            minibatch_size=self.minibatch_size,
            minibatch_full_eval_steps=self.minibatch_full_eval_steps,
            parallel_trials=self.parallel_trials,
            zeroshot=self.zeroshot,
        )

    def planned_trials(self, state: MiproState) -> int:
        """Evaluations the run makes at most (see ``TrialSearch.planned``)."""
        return self._search().planned(state)

    # -- ask -------------------------------------------------------------------------------------------------
    def ask(self, state: MiproState) -> list[Any]:
        if state.phase == "done":
            return []
        search = self._search()
        if state.phase == "trials":
            return [search.evaluation(state, trial) for trial in search.next_trials(state)]
        work: list[Any] = []
        if state.phase == "bootstrap":
            work.append(self._bootstrap_work(state))
        work.extend(self._proposer().work(state))
        if not state.trials:  # the baseline depends on nothing proposed: score it while candidates are made
            work.append(search.evaluation(state, search.next_trials(state)[0]))
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

    # -- tell ------------------------------------------------------------------------------------------------
    def tell(self, state: MiproState, results: list[Any]) -> MiproState:
        state = state.model_copy(deep=True)
        if state.phase == "trials":
            self._search().record(state, results)
            return state
        proposer = self._proposer()
        for result in results:
            if isinstance(result, BootstrapOutcome):
                state.bootstrap_outcomes[result.index] = result
            elif isinstance(result, GenerateOutcome):
                proposer.record(state, result)
        evaluations = [result for result in results if isinstance(result, EvaluateOutcome)]
        if evaluations:  # the baseline, asked for alongside the first preparation step
            self._search().record(state, evaluations)
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

    def _advance(self, state: MiproState) -> None:
        """Move to the next phase once the current one has nothing left to ask."""
        proposer = self._proposer()
        if state.phase == "bootstrap" and all(demo_set.demos is not None for demo_set in state.demo_sets):
            state.phase, state.bootstrap_outcomes = "propose", {}
            proposer.ground(state)
        if state.phase == "propose" and proposer.proposed(state):
            state.instructions = proposer.instructions(state)
            state.phase = "trials"


__all__ = ["AUTO_RUN_SETTINGS", "MIPROv2"]
