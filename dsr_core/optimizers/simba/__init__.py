"""SIMBA (Stochastic Introspective Mini-Batch Ascent) as an ask/tell machine: DSPy's ``dspy.SIMBA``, its
parameters and defaults.

The pool starts with the program as given (program 0, which, as in DSPy, counts as scoring 0: it has no
mini-batch scores). Each of ``max_steps`` steps:

- takes the next ``bsize`` examples of a seeded shuffle of the trainset (reshuffled when it runs out);
- samples trajectories: ``num_candidates`` sampling models (the program's own LMs at temperature 1.0, each
  with its own rollout id; with ``teacher_settings``, the first is the teacher LM) run, per example, a
  program drawn from the top ``num_candidates`` of the pool (the baseline always among them) by a softmax
  over their mean mini-batch scores at ``temperature_for_sampling`` (TraceWork, calls traced);
- buckets the trajectories by example, best first, and ranks the buckets by max-to-min score gap, then
  max score, then max-to-average gap: high-variance examples first;
- builds a candidate from each bucket in that order until there are ``num_candidates + 1``: a source
  program drawn from the top of the pool at ``temperature_for_candidates``, some of its demos dropped (a
  Poisson number, at least one once a predictor holds ``max_demos``), then a strategy drawn:
  ``append_a_demo`` (the best trajectory's last call of each predictor becomes a demo of that predictor,
  inputs cut at ``demo_input_field_maxlen`` characters) or ``append_a_rule`` (the prompt model, with DSPy's
  OfferFeedback prompt, contrasts the best and the worst trajectory, the metric's feedback included, and
  its advice for each predictor is appended to that predictor's instructions; GenerateWork). With
  ``max_demos=0`` only rules. A strategy whose guard declines (a best trajectory at or below the batch's
  10th score percentile; for a rule also a worst one at or above the 90th) leaves the copy as it is, and
  the copy is still a candidate, as in DSPy;
- scores the candidates on the mini-batch (EvaluateWork), adds them all to the pool and keeps the best as
  the step's winner.

At the end, up to ``num_candidates + 1`` winners, evenly spaced from the baseline to the last step's, are
scored on the whole selection set; the best (the earlier among equals) is the result.

Every random draw comes from ``rng_for(seed, label, step, ...)``: it depends on the seed and the position
in the run only, never on the order work comes back in or how it was split into shards.

Where this differs from DSPy and why:

- DSPy carries one Random (and a numpy one for the Poisson draw) through the run; here each draw has its
  own seeded stream (the same algorithm, other draws).
- The rollout ids of the sampling models are new every step (DSPy reuses 0..n-1), so a program sampled
  again on an example in a later step gives a fresh trajectory instead of its cached one.
- Each predictor keeps its own LM when sampled (DSPy sets the baseline's LM on every predictor), so
  programs whose predictors use different LMs sample each with its own.
- A trajectory shows each predictor's calls grouped by predictor, in the program's order (DSPy: in call
  order across predictors); the same for a single-predictor program.
- The rule requests of a step are asked at once; a failed one makes room for the next bucket as DSPy's
  sequential loop does, so the candidates are the same. A request that fails for an infrastructure reason
  raises from ``tell`` (resuming asks again); any other failure drops the candidate, as DSPy does.
- The metric's feedback is the only reward information shown (DSPy shows every field of the metric's
  Prediction other than the score).
- The advice request uses GenerateWork's sampling temperature (1.0) with a seeded rollout id, not the
  prompt model's own temperature.
- With a valset, the winners are scored on it at the end (DSPy's compile takes none and scores them on the
  trainset, as this does without one). ``trial_logs`` puts each winner's final score under its own step
  (DSPy files it by position in the scored list).
- The state keeps every training example's inputs (JSON): the prompt model is shown the inputs of the
  example it contrasts.
"""

from .optimizer import SIMBA
from .pool import final_positions, percentile, poisson, softmax_sample, top_programs
from .state import Bucket, Plan, Program, Rollout, SimbaState, Step, StepRecord, Trajectory, Trial

__all__ = [
    "SIMBA",
    "Bucket",
    "Plan",
    "Program",
    "Rollout",
    "SimbaState",
    "Step",
    "StepRecord",
    "Trajectory",
    "Trial",
    "final_positions",
    "percentile",
    "poisson",
    "softmax_sample",
    "top_programs",
]
