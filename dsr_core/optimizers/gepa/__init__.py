"""GEPA as an ask/tell machine: reflective prompt evolution over a Pareto frontier (DSPy's ``dspy.GEPA`` and
the ``gepa`` package's engine, with its defaults).

The run:

- the baseline: the program as given, scored on every validation example (the trainset when there is no
  valset, as DSPy does). It is candidate 0 of the pool; every candidate keeps its score per example.
- then iterations, until the budget of metric calls (``max_metric_calls``, or DSPy's rule for
  ``max_full_evals`` and ``auto``) is spent; one at a time, the budget is checked before each iteration
  starts, so the last one may go over, as in gepa (see below for ``num_proposals``). An iteration is one of:
  - a reflective mutation: a parent drawn from the frontier (``pareto``: the candidates best on some
    example, dominated ones removed, weighted by the number of examples they lead on; ``current_best``: the
    best average), the parent's next predictor in round-robin order, and a minibatch of
    ``reflection_minibatch_size`` training examples. The parent runs on the minibatch with its calls traced
    (TraceWork); a perfect minibatch is skipped (``skip_perfect_score``); otherwise the reflection model is
    shown the predictor's instruction and, per example, one of its calls with the outputs and the feedback
    (the metric's for that predictor, else for the program, else the score and the expected output), and
    asked for a new instruction (GenerateWork). The new candidate is scored on the same minibatch and,
    only if its sum is higher than the parent's, on the whole validation set and added to the pool.
  - a merge (``use_merge``, at most ``max_merge_invocations`` accepted): right after a mutation was
    added, two frontier candidates with a common ancestor are combined predictor by predictor (merge.py),
    scored on a validation subsample and, if no worse than the better parent there, on the whole set.
- the result: the candidate with the best average validation score (the first of equals).

``num_proposals=k`` keeps k iterations running at once, speculatively: each starts as a one-at-a-time run
would start it if every earlier running iteration ends without adding a candidate (its parent, component
and minibatch then come from the same pool and the same seeded draws). Iterations are committed in order,
and as the first one commits the next one starts (a sliding window, not batches). Once one passes its
minibatch (or subsample), the later ones are dropped and redone from the new pool, and none starts until
it is committed. ``discarded_metric_calls`` counts what the dropped iterations spent.

The budget: with ``num_proposals=1`` it is gepa's rule, checked before each iteration starts, so the last
one may go over (DSPy spends 402 of 400 on the benchmark task). With ``k > 1`` it caps everything spent,
dropped work included: an iteration starts only while the budget left covers the most it and the running
ones can still spend (each one's minibatch or subsample evaluations, plus one full evaluation, since the
first iteration to need one drops the later ones). So ``metric_calls + discarded_metric_calls <=
max_metric_calls``, and the run is the one-at-a-time run (the same candidates, lineage, scores, trials and
budget count, iteration by iteration) up to where the budget stops it; it stops earlier, by what the
dropped work spent and by up to one iteration's largest cost (2 minibatches and the validation set).

Every random draw comes from ``rng_for(seed, label, iteration)``, so it depends on the seed and the
iteration number only, never on the order work comes back in or how it was split into shards.

Where this differs from DSPy and gepa:

- gepa carries one Random through the run; here each draw has its own seeded stream (the same algorithm,
  other draws). Ties in gepa's set and dict orders are broken by candidate number and predictor order.
- The epoch shuffle pads its last minibatch with the epoch's first examples (gepa: the least used ones),
  and a minibatch is never larger than the trainset.
- The merge subsample is the whole validation set when it has at most five examples (gepa draws five with
  repetition).
- For a GEPA feedback metric ``(gold, pred, trace, pred_name, pred_trace)``, ``pred_trace`` holds every
  call of the predictor on the example (DSPy passes the one call it shows), and the feedback is asked for
  each predictor that ran, so the trace serves whichever predictor is chosen.
- A metric without feedback gets DSPy's sentence about the score plus the example's expected output.
- A reflection that fails for an infrastructure reason raises from ``tell`` (resuming asks again); any
  other failure, or an empty reply, ends the iteration without a proposal, as gepa does.
- ``reflection_lm=None`` uses the runner's prompt model (the configured LM) instead of failing; ``log_dir``
  has no effect (the state is the checkpoint); ``teacher`` is refused as DSPy refuses it. DSPy's
  ``instruction_proposer``, ``component_selector``, ``add_format_failure_as_feedback``, ``failure_score``,
  wandb/mlflow switches and ``gepa_kwargs`` are not accepted.
"""

from .merge import MergePlan, plan_merge
from .optimizer import AUTO_RUN_SETTINGS, GEPA, auto_budget
from .pareto import dominators, instance_fronts, select_parent
from .result import GepaResult, detailed_results
from .state import Candidate, GepaState, Iteration, Trial

__all__ = [
    "AUTO_RUN_SETTINGS",
    "GEPA",
    "Candidate",
    "GepaResult",
    "GepaState",
    "Iteration",
    "MergePlan",
    "Trial",
    "auto_budget",
    "detailed_results",
    "dominators",
    "instance_fronts",
    "plan_merge",
    "select_parent",
]
