"""The GEPA benchmark's task: data, metrics, the dsr program and the test server's responder.

The task: ``word -> code`` in two steps, one predictor each:

- ``reverse`` (``word -> reversed``): the word backwards, in lowercase (``"tamiro" -> "orimat"``);
- ``encode`` (``reversed -> code``): that string in capitals with a dash between letters
  (``"orimat" -> "O-R-I-M-A-T"``).

The words are invented (seeded): 30 for training and 30 for validation.

The responder plays a language model that does a step right only when the step's instruction mentions
that step's three keywords (``KEYWORDS``). It checks them in order. At the first one missing it makes that
keyword's mistake (``MISTAKES``: not reversing, upper case, a trailing period; lower case, no dashes,
spaces around the dashes) with probability ``P_MISTAKE``; otherwise it goes on to the next missing one. So
a step with a keyword missing fails most of the time, mostly with the first missing keyword's mistake.
Whether it errs is a hash of the step's input, the keyword and the set of keywords the instruction
mentions, never of the instruction's exact wording, so both frameworks meet the same odds for the same
keywords.

The score is half a point for the reversed word and half for the final code. Only the metric's feedback
names the keywords: it recognises each mistake in a step's output (given that step's actual input) and
says which keyword the instruction must mention (``must mention 'backwards'``). Instructions without
keywords score about 3%; the optimum (100%) needs all six keywords, in both predictors. The feedback on a
minibatch shows one or a few keywords at a time, so a run needs at least two accepted mutations (one per
predictor), usually more, or merges of them.

The reflection model reads the feedback in the reflection prompt and proposes the current instruction plus
one sentence per keyword the feedback asks for. It recognises three prompts:

- dsr's reflection signature (``current_instruction``, ``examples_with_feedback`` -> ``new_instruction``)
  in chat format; it answers in a ``` fence, as gepa's prompt asks (dsr strips it);
- DSPy 3.4.1's default ``InstructionProposer`` (the same fields through DSPy's JSONAdapter); it answers
  in JSON without a fence (DSPy keeps the text as it is);
- gepa's own ``InstructionProposalSignature`` prompt (plain text); it answers between ``` fences.

Standard library only: both interpreters import it (``make_dsr_program`` imports dsr_core when called).
Run the server with ``python -m dsr_core.testing.server --latency 0.1 --responder bench.gepa_task:responder``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

SEED = 0  # GEPA's default seed, on both sides
N_TRAIN, N_VAL = 30, 30
DATA_SEED = 4242
MAX_METRIC_CALLS = 400
MINIBATCH = 3

# the keywords each step needs in its instruction, in the order the responder checks them
KEYWORDS = {"reversed": ("backwards", "lowercase", "bare"), "code": ("capitals", "dashes", "compact")}
P_MISTAKE = 0.7

GEPA_PROMPT_START = "I provided an assistant with the following instructions to perform a task for me:"


# -- data ----------------------------------------------------------------------------------------------------------
def words(n: int, seed: int = DATA_SEED) -> list[str]:
    """``n`` distinct invented words of 2 to 4 syllables (no palindromes)."""
    rng = random.Random(seed)
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "kl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    seen: dict[str, None] = {}
    while len(seen) < n:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 4)))
        if word != word[::-1]:
            seen.setdefault(word, None)
    return list(seen)


def reverse_of(word: str) -> str:
    return word[::-1].lower()


def encode_of(text: str) -> str:
    return "-".join(text.upper())


def rows(split: str) -> list[dict[str, str]]:
    """``[{"word", "reversed", "code"}]`` for ``split`` in ("train", "val")."""
    all_words = words(N_TRAIN + N_VAL)
    chosen = all_words[:N_TRAIN] if split == "train" else all_words[N_TRAIN:]
    return [{"word": w, "reversed": reverse_of(w), "code": encode_of(reverse_of(w))} for w in chosen]


# -- the metric ------------------------------------------------------------------------------------------------------
def diagnose(field: str, value: str, output: str) -> list[str]:
    """The keywords whose mistake explains ``output`` of the step writing ``field`` from input ``value``
    (empty: the step is right); ``["?"]`` when no single mistake explains it."""
    right = right_answer(field, value)
    if output == right:
        return []
    return [k for k in KEYWORDS[field] if output == MISTAKES[k](right)] or ["?"]


def score_of(gold: Any, pred: Any) -> float:
    """Half a point for the reversed word, half for the final code."""
    reversed_ok = str(getattr(pred, "reversed", "") or "").strip() == gold.reversed
    code_ok = str(getattr(pred, "code", "") or "").strip() == gold.code
    return 0.5 * reversed_ok + 0.5 * code_ok


def feedback_text(step: str, missing: list[str]) -> str:
    if not missing:
        return f"The {step} step is correct."
    if missing == ["?"]:
        return f"The {step} step is wrong."
    asks = " ".join(f"The instruction must mention '{keyword}'." for keyword in missing)
    return f"The {step} step is wrong. {asks}"


def feedback(gold: Any, pred: Any, pred_name: str | None) -> str:
    """The feedback for predictor ``pred_name`` (``None``: for the whole program)."""
    reversed_out = str(getattr(pred, "reversed", "") or "").strip()
    code_out = str(getattr(pred, "code", "") or "").strip()
    parts = []
    name = pred_name or ""
    if not name or "reverse" in name:
        parts.append(feedback_text("reverse", diagnose("reversed", gold.word, reversed_out)))
    if not name or "encode" in name:
        parts.append(feedback_text("encode", diagnose("code", reversed_out, code_out)))
    return " ".join(parts)


def make_feedback_metric(prediction_class: Any) -> Any:
    """GEPA's feedback metric for a framework, built on its ``Prediction`` class (score plus feedback)."""

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        return prediction_class(score=score_of(gold, pred), feedback=feedback(gold, pred, pred_name))

    return metric


def score_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    """The same score without feedback, for the final ``Evaluate`` on either side."""
    return score_of(example, prediction)


# -- programs --------------------------------------------------------------------------------------------------------
def make_dsr_program() -> Any:
    """The dsr program: ``reverse`` then ``encode``, returning both outputs."""
    import dsr_core as dsr

    class ReverseEncode(dsr.Module):
        def __init__(self) -> None:
            super().__init__()
            self.reverse = dsr.Predict("word -> reversed")
            self.encode = dsr.Predict("reversed -> code")

        async def aforward(self, word: str) -> Any:
            first = await self.reverse.acall(word=word)
            second = await self.encode.acall(reversed=first.reversed)
            return dsr.Prediction(reversed=first.reversed, code=second.code)

    return ReverseEncode()


# -- the responder ---------------------------------------------------------------------------------------------------
def unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


MISTAKES = {  # what the step writes, instead of the right answer, when it errs for want of the keyword
    "backwards": lambda right: right[::-1],  # forgets to reverse: the word itself
    "lowercase": lambda right: right.upper(),
    "bare": lambda right: right + ".",
    "capitals": lambda right: right.lower(),
    "dashes": lambda right: right.replace("-", ""),
    "compact": lambda right: right.replace("-", " - "),
}


def right_answer(field: str, value: str) -> str:
    return reverse_of(value) if field == "reversed" else encode_of(value)


def mistake(field: str, value: str, instruction: str) -> str | None:
    """The keyword whose mistake the step makes on ``value`` (``None``: the step is done right)."""
    instruction = instruction.lower()
    present = ",".join(k for k in KEYWORDS[field] if k in instruction)
    for keyword in KEYWORDS[field]:
        if keyword not in instruction and unit(field, value, keyword, present) < P_MISTAKE:
            return keyword
    return None


def task_answer(field: str, request: Any) -> str:
    value = request.inputs.get("word" if field == "reversed" else "reversed", "").strip()
    right = right_answer(field, value)
    wrong = mistake(field, value, request.instructions)
    return right if wrong is None else MISTAKES[wrong](right)


def proposal(current: str, feedback_text: str) -> str:
    """The current instruction plus a sentence for every keyword the feedback asks for that it lacks."""
    asked = re.findall(r"must mention '(\w+)'", feedback_text)
    missing = [k for k in dict.fromkeys(asked) if k not in current.lower()]
    if not missing:
        return f"{current.strip()} Be careful."
    return current.strip() + "".join(f" Keep this in mind: {k}." for k in missing)


def gepa_prompt_parts(text: str) -> tuple[str, str]:
    """gepa's ``InstructionProposalSignature`` prompt: (current instruction, rendered examples)."""
    blocks = re.findall(r"```\n(.*?)\n```", text, flags=re.S)
    current = blocks[0] if blocks else ""
    return current, text


def responder(request: Any) -> str:
    """For ``dsr_core.testing.server``: the two task steps and the reflection prompts of dsr, DSPy and gepa."""
    outputs = request.output_fields
    if "reversed" in outputs:
        return request.reply(reversed=task_answer("reversed", request))
    if "code" in outputs:
        return request.reply(code=task_answer("code", request))
    if "new_instruction" in outputs:
        inputs = request.inputs
        new = proposal(inputs.get("current_instruction", ""), inputs.get("examples_with_feedback", ""))
        if request.json_mode or "Respond with a JSON object" in request.last_user:
            return json.dumps({"new_instruction": new})  # DSPy's InstructionProposer (JSONAdapter): as it is
        return request.reply(new_instruction=f"```\n{new}\n```")  # dsr: gepa's fence, which dsr strips
    if GEPA_PROMPT_START in request.last_user:  # gepa's own prompt, plain text: the text between fences
        current, examples = gepa_prompt_parts(request.last_user)
        return f"```\n{proposal(current, examples)}\n```"
    first = next(iter(request.inputs.values()), "")
    return request.reply(**{name: first for name in outputs})
