"""Structural optimization: search a program's graph for a better or cheaper structure, as an ask/tell machine.

The run:

- trace: the student runs on a few training examples (``GraphWork``) and becomes a ``ProgramGraph``; a
  student that is already a ``GraphProgram`` is taken as is. A graph with plain Python the trace could not
  name (a step node without a function) stops the run, saying which nodes to mark with ``@step``.
- baseline: the graph, run as a ``GraphProgram`` with the student's LMs, scored on the validation set (the
  trainset when there is none), with its LM calls and tokens per example.
- steps, at most ``max_steps``, each from the current graph:
  - diagnose: when there are split questions to ask (or ``max_children`` is set), the current graph runs
    traced (``TraceWork``) on ``diagnose_examples`` seeded training examples; the runs that fell short
    become per-node failure notes (planner.py);
  - propose: with ``propose_splits``, the prompt model is asked (``ProposeSplit``, with the node's failure
    notes) how to split each Predict node it was not asked about before (answers are kept per node name and
    signature and reused);
  - children: every legal Fuse, every proposed Split that applies, AddReasoning for each Predict node
    without a reasoning field (``add_reasoning``); a child whose graph was already scored is skipped;
  - rank: with more children than ``max_children``, the prompt model ranks their edits (``RankEdits``) and
    only the first ``max_children`` go on; the others are ``pruned`` (an unusable answer keeps the order
    they were made in);
  - minibatch: the parent and its children on one seeded sample of ``minibatch_size`` training examples;
    a Fuse goes on when it is no worse than the parent minus ``fuse_tolerance``, any other edit when it is
    strictly better;
  - confirm: those children on the validation set. A Fuse is accepted when its score is at least the
    parent's minus ``fuse_tolerance`` (points, 0-100) and it costs fewer LM calls or tokens per example; a
    Split or AddReasoning only when it beats the parent by more than ``min_gain`` points. The accepted
    child with the best score (then fewer calls, then fewer tokens, then the first) becomes current.
  - rebootstrap (``rebootstrap=True``, off by default): when that child is a Fuse or a Split, it runs as
    the teacher (``BootstrapWork``) on a seeded sample of training examples, and the demos of its
    successful runs (at most ``max_bootstrapped_demos``, DSPy's 4) replace the demos of the nodes the edit
    made (``a+b``, the parts of a split); every other node keeps its demos. That graph is a candidate of its
    own (``rebootstrapped`` names the nodes, ``demo_examples`` the runs), scored on the validation set, and
    becomes current only when it scores no worse than the child without those demos.
  The search ends when a step accepts nothing, has no children, or ``max_steps`` steps ran.
- result: the current graph's GraphProgram state, which ``dsr.load_program`` rebuilds. ``best_score`` is
  its validation score.

Every candidate stays in the state (hash, parent hash, edit, minibatch and validation score, cost,
verdict and why); ``quality_cost_table`` gives them as rows with their Pareto-front flags. Every draw
comes from ``rng_for``, so a run is the same for a seed, and resuming from any checkpoint gives the same
final state. Without ``rebootstrap`` a fused node keeps the merged demos ``Fuse`` carries over and the
parts of a split the node's demos restricted to their fields.
"""

from .optimizer import StructuralOptimizer, graph_program_state, node_key
from .result import CostRow, describe_edit, quality_cost_table
from .state import Candidate, Evaluation, SplitProposal, SplitRequest, StructuralState, Trial

__all__ = [
    "Candidate",
    "CostRow",
    "Evaluation",
    "SplitProposal",
    "SplitRequest",
    "StructuralOptimizer",
    "StructuralState",
    "Trial",
    "describe_edit",
    "graph_program_state",
    "node_key",
    "quality_cost_table",
]
