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

The modules: ``state`` (the state, the checkpoint), ``proposer`` (the grounded proposer), ``search`` (the
trials: TPE over the trial history kept in the state, a pure function of it) and ``optimizer`` (MIPROv2:
its parameters, the phases and the demo sets).

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
  concurrency, ``max_errors`` and ``provide_traceback`` go to every evaluation. ``track_stats`` (on by
  default, as in DSPy) puts DSPy's trial statistics on the compiled program and ``log_dir`` saves every
  evaluated program there as JSON with DSPy's file names (stats.py). ``verbose`` and
  ``requires_permission_to_run`` have no effect (the state, the checkpoints and the flows' MLflow runs keep
  every trial; nothing asks for permission) and say so.
"""

from __future__ import annotations

from .optimizer import AUTO_RUN_SETTINGS, MIPROv2
from .proposer import program_source, render_examples
from .search import num_trials_for
from .state import DatasetSummary, DemoSet, MiproState, Proposal, Trial

__all__ = [
    "AUTO_RUN_SETTINGS",
    "DatasetSummary",
    "DemoSet",
    "MIPROv2",
    "MiproState",
    "Proposal",
    "Trial",
    "num_trials_for",
    "program_source",
    "render_examples",
]
