"""Programs as graphs: an IR of Predict and Python step nodes, tracing, an interpreter, edits, a validator.

``trace_program(program, examples)`` draws a program's graph from a few runs; ``GraphProgram(graph)`` runs a
graph as a Module (independent nodes concurrently) and saves it as an ordinary program file;
``apply_edit(graph, Fuse(...) | Split(...) | AddReasoning(...))`` changes its structure, checked by
``validate_graph``; ``render_text`` and ``render_dot`` draw it. Mark the plain Python a program runs between
LM calls with ``@step`` so its graph can run without the program.
"""

from .edits import AddReasoning, Edit, Fuse, GraphEditError, Split, SplitPart, apply_edit, legal_fuses
from .interpreter import GraphProgram, graph_in_state, load_graph_program
from .ir import Binding, FieldSpec, GraphError, PredictNode, ProgramGraph, Ref, SignatureSpec, StepNode
from .proposals import ProposeSplit, RankEdits, propose_split, split_from_proposal
from .render import render_dot, render_png, render_text
from .steps import step
from .trace import PlacementProblem, UnplaceableNodesError, atrace_program, trace_program
from .validate import GraphValidationError, is_widening, topological_order, validate_graph

__all__ = [
    "AddReasoning",
    "Binding",
    "Edit",
    "FieldSpec",
    "Fuse",
    "GraphEditError",
    "GraphError",
    "GraphProgram",
    "GraphValidationError",
    "PlacementProblem",
    "PredictNode",
    "ProgramGraph",
    "ProposeSplit",
    "RankEdits",
    "Ref",
    "SignatureSpec",
    "Split",
    "SplitPart",
    "StepNode",
    "UnplaceableNodesError",
    "apply_edit",
    "atrace_program",
    "graph_in_state",
    "is_widening",
    "legal_fuses",
    "load_graph_program",
    "propose_split",
    "render_dot",
    "render_png",
    "render_text",
    "split_from_proposal",
    "step",
    "topological_order",
    "trace_program",
    "validate_graph",
]
