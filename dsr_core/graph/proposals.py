"""Split proposals by a prompt LM: the signature that asks for one, and parsing its answer into a Split.

The LM sees the node's signature and instructions (and, when given, examples of what goes wrong) and
answers with the sub-steps as inline signatures plus one instruction each. ``split_from_proposal`` turns
that answer into a ``Split`` and applies it to the graph, so a proposal that does not fit (a part reading a
field it cannot have, a node output nobody produces) fails here with the reason, not later in a run.
"""

from __future__ import annotations

import re
from typing import Any

from ..modules.predict import Predict
from ..signatures import InputField, OutputField, Signature
from .edits import Split, SplitPart, apply_edit
from .ir import GraphError, PredictNode, ProgramGraph

_LIST_MARKER = re.compile(r"^\s*(?:[-*]|\d+[.)])\s+")


class ProposeSplit(Signature):
    """You improve LM programs by restructuring them. One step of the program asks the language model for too much at once. Split it into a short chain of smaller steps, each a signature `inputs -> outputs` over named fields. The first steps may only read the step's own inputs; each later step may also read the outputs of earlier steps; together the steps must produce every output of the original step, and the last steps produce them. Give each new intermediate field a short snake_case name."""  # noqa: E501

    step_signature: str = InputField(desc="The step's signature, `inputs -> outputs`")
    step_instructions: str = InputField(desc="The step's current instructions")
    failures: str = InputField(desc="Examples where the step went wrong, or 'none'")
    sub_signatures: list[str] = OutputField(desc="The smaller steps in order, each `inputs -> outputs`")
    sub_instructions: list[str] = OutputField(desc="One instruction per smaller step, in the same order")


class RankEdits(Signature):
    """You improve LM programs by restructuring them. Given the program's steps, examples of what goes wrong, and a numbered list of candidate edits (fusing two steps into one call, splitting a step into smaller ones, adding a reasoning field to a step), rank the edits from the one most likely to raise the program's score (or, for a fusion, to keep the score at fewer LM calls) to the least likely."""  # noqa: E501

    program: str = InputField(desc="The program's steps in run order, with where each input comes from")
    failures: str = InputField(desc="Examples where the program went wrong, per step, or 'none'")
    edits: str = InputField(desc="The candidate edits, one per line, numbered from 1")
    ranking: list[int] = OutputField(desc="The edit numbers, best first")


def split_from_proposal(
    graph: ProgramGraph, node: str, sub_signatures: list[str], sub_instructions: list[str] | None = None
) -> Split:
    """The Split a proposal describes, checked by applying it to ``graph`` (``GraphEditError`` if it does
    not apply). List markers (``1.``, ``-``) the LM puts before a signature are dropped."""
    instructions = list(sub_instructions or [])
    parts = [
        SplitPart(
            signature=_LIST_MARKER.sub("", text).strip(),
            instructions=(instructions[i] if i < len(instructions) else ""),
        )
        for i, text in enumerate(sub_signatures)
    ]
    split = Split(node=node, parts=parts)
    apply_edit(graph, split)
    return split


async def propose_split(graph: ProgramGraph, node: str, *, lm: Any = None, failures: str = "none") -> Split:
    """Ask the prompt LM (``lm``, else the configured one) how to split Predict node ``node``."""
    target = graph.node(node)
    if not isinstance(target, PredictNode):
        raise GraphError(f"node {node!r} is a Python step; only Predict nodes are split")
    proposal = await Predict(ProposeSplit, lm=lm).acall(
        step_signature=target.signature.text, step_instructions=target.signature.instructions, failures=failures
    )
    return split_from_proposal(graph, node, list(proposal.sub_signatures), list(proposal.sub_instructions))
