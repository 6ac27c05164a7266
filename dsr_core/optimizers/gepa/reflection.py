"""What GEPA's reflection model sees: a minibatch of training examples, the chosen predictor's calls on
them with the outputs and feedback, rendered as gepa renders its reflective dataset, and the instruction
read back from the reply.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from typing import Any

from ..base import TraceOutcome, rng_for


def minibatch(seed: int, n_train: int, size: int, iteration: int) -> list[int]:
    """The training examples iteration ``iteration`` reflects on: consecutive slices of a per-epoch shuffle
    of the trainset, padded to a whole number of minibatches with the epoch's first examples (gepa pads
    with the least used ones; the slice of an iteration depends on nothing but its number here)."""
    size = min(size, n_train)
    length = math.ceil(n_train / size) * size
    start = iteration * size
    epoch, offset = divmod(start, length)
    order = list(range(n_train))
    rng_for(seed, "epoch", epoch).shuffle(order)
    order += order[: length - n_train]
    return order[offset : offset + size]


def default_feedback(outcome: TraceOutcome) -> str:
    """Feedback for a metric that gives none: DSPy's sentence about the score, and the expected output."""
    text = f"This trajectory got a score of {outcome.score}."
    if outcome.gold:
        expected = "; ".join(f"{key}: {value}" for key, value in outcome.gold.items())
        text += f" The expected output was: {expected}."
    return text


def reflective_examples(traces: Sequence[TraceOutcome], component: str, rng: random.Random) -> list[dict[str, Any]]:
    """Per traced example where ``component`` ran: one of its calls (drawn as DSPy draws it), the outputs and
    the feedback (the metric's for this predictor, else for the program, else ``default_feedback``)."""
    examples = []
    for outcome in traces:
        calls = outcome.calls.get(component)
        if not calls:
            continue
        call = rng.choice(calls)
        feedback = outcome.predictor_feedback.get(component) or outcome.feedback or default_feedback(outcome)
        examples.append(
            {
                "Inputs": {key: str(value) for key, value in call.inputs.items()},
                "Generated Outputs": {key: str(value) for key, value in call.outputs.items()},
                "Feedback": feedback,
            }
        )
    return examples


def _render(value: Any, level: int) -> str:
    if isinstance(value, dict):
        text = "".join(f"{'#' * level} {key}\n" + _render(item, min(level + 1, 6)) for key, item in value.items())
        return text or "\n"
    return f"{str(value).strip()}\n\n"


def render_examples(examples: Sequence[dict[str, Any]]) -> str:
    """The examples as gepa's markdown: ``# Example n``, a ``##`` section per part, a ``###`` per field."""
    return "\n\n".join(
        f"# Example {number}\n" + "".join(f"## {key}\n" + _render(value, 3) for key, value in example.items())
        for number, example in enumerate(examples, start=1)
    )


_FENCE = re.compile(r"^```[^\n]*\n?|\n?```$")


def read_instruction(text: str) -> str:
    """The proposed instruction, without the ``` fence gepa's prompt asks the model to wrap it in."""
    return _FENCE.sub("", text.strip()).strip()
