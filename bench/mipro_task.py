"""The MIPROv2 benchmark's task: data, metric, program factories and the test server's responder.

The task: ``word -> code``, where the code is the word written backwards in capital letters
(``"tamiro" -> "ORIMAT"``). The words are invented (seeded), 200 for training and 100 for validation.

The responder plays a language model that gets the task right more often when the prompt has the right
ingredients, so MIPROv2 has something real to find on either framework:

- the task predictor (output field ``code``) answers correctly with probability
  ``P_BASE`` (+ ``P_DEMOS`` with at least two demos in the prompt) (+ ``P_KEYWORD`` when the instruction
  mentions "backwards"); otherwise it forgets to reverse. Which way a request goes is a hash of its
  messages, so the same prompt always gets the same answer, whichever framework sends it;
- the proposer's calls (dispatched on the output fields DSPy's MIPROv2 asks for, which dsr copies):
  dataset observations (three, then ``COMPLETE``), the observation summary, the program and module
  descriptions, and instructions. An instruction proposed after seeing task demos mentions "backwards"
  for two of three (tip, demos) combinations; one proposed without demos never does.

Standard library only: both interpreters import it (``make_dsr_program`` imports dsr_core when called).
Run the server with ``python -m dsr_core.testing.server --latency 0.1 --responder bench.mipro_task:responder``.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

SEED = 9  # DSPy's default MIPROv2 seed; used on both sides
N_TRAIN, N_VAL = 200, 100
DATA_SEED = 2024
KEYWORD = "backwards"

P_BASE = 0.10  # default instruction, fewer than two demos
P_DEMOS = 0.45  # added with at least two demos in the prompt
P_KEYWORD = 0.40  # added when the instruction says "backwards"

NO_TASK_DEMOS = "No task demos provided."

OBSERVATIONS = [
    "Every example pairs a short lowercase word (`word`) with an upper-case string (`code`) of the same length. ",
    "The code is made of exactly the letters of the word, in capitals; the words look invented, not English. ",
    "The order of the letters in the code differs from the word, which suggests a fixed rearrangement. ",
]
SUMMARY = (
    "The dataset maps short invented lowercase words to upper-case codes of the same length. "
    "The code uses exactly the word's letters, rearranged in a fixed way."
)
PROGRAM_DESCRIPTION = (
    "The program turns a word into a code with a single language-model call: one Predict module reads the "
    "`word` and writes the `code`."
)
MODULE_DESCRIPTION = "This Predict module is the whole pipeline: it reads `word` and produces its `code`."
INSTRUCTIONS_WITH_KEYWORD = [
    "Write the given word backwards, letter by letter, and put every letter in capitals: that is the code.",
    "You are a careful cipher clerk. Spell the word backwards and upper-case each letter to produce its code.",
]
INSTRUCTIONS_WITHOUT_KEYWORD = [
    "Produce the code for the given word, in capital letters.",
    "Read the word carefully and answer with its code only.",
    "Transform the input word into its code; keep the answer short and exact.",
]


# -- data ----------------------------------------------------------------------------------------------------------
def words(n: int, seed: int = DATA_SEED) -> list[str]:
    """``n`` distinct invented words of 2 to 4 syllables."""
    rng = random.Random(seed)
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "kl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    seen: dict[str, None] = {}
    while len(seen) < n:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 4)))
        seen.setdefault(word, None)
    return list(seen)


def code_for(word: str) -> str:
    return word[::-1].upper()


def rows(split: str) -> list[dict[str, str]]:
    """``[{"word": ..., "code": ...}]`` for ``split`` in ("train", "val")."""
    all_words = words(N_TRAIN + N_VAL)
    chosen = all_words[:N_TRAIN] if split == "train" else all_words[N_TRAIN:]
    return [{"word": w, "code": code_for(w)} for w in chosen]


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    """Exact, case-sensitive match of the code (both frameworks call it as metric(example, prediction[, trace]))."""
    return str(getattr(prediction, "code", "") or "").strip() == example.code


def write_jsonl(path: Any, split: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows(split):
            handle.write(json.dumps(row) + "\n")


# -- programs --------------------------------------------------------------------------------------------------------
def make_dsr_program() -> Any:
    """The dsr program: a module with one ``Predict("word -> code")`` (a factory, for the flow's program.ref)."""
    import dsr_core as dsr

    class WordCode(dsr.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dsr.Predict("word -> code")

        def forward(self, **inputs: Any) -> Any:
            return self.predict(**inputs)

    return WordCode()


# -- the responder ---------------------------------------------------------------------------------------------------
def unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def success_probability(n_demos: int, instruction: str) -> float:
    p = P_BASE
    if n_demos >= 2:
        p += P_DEMOS
    if KEYWORD in instruction.lower():
        p += P_KEYWORD
    return p


def answer_code(request: Any) -> str:
    word = request.inputs.get("word", "").strip()
    messages = json.dumps([[m.get("role"), m.get("content")] for m in request.messages])
    if unit(messages) < success_probability(len(request.demos), request.instructions):
        return code_for(word)
    return word.upper()  # the typical mistake: forgot to reverse


def observation(request: Any) -> str:
    prior = request.inputs.get("prior_observations")
    if prior is None:
        return OBSERVATIONS[0]
    return next((o for o in OBSERVATIONS if o.strip() not in prior), "COMPLETE")


def instruction(request: Any) -> str:
    inputs = request.inputs
    demos = inputs.get("task_demos", NO_TASK_DEMOS).strip()
    tip = inputs.get("tip", "")
    if demos == NO_TASK_DEMOS or not demos:
        options = INSTRUCTIONS_WITHOUT_KEYWORD
        return options[int(unit("no-demos", tip) * len(options))]
    draw = unit("demos", tip, demos)
    if draw < 2 / 3:
        return INSTRUCTIONS_WITH_KEYWORD[int(draw * 3)]
    return INSTRUCTIONS_WITHOUT_KEYWORD[int(unit("fallback", tip, demos) * len(INSTRUCTIONS_WITHOUT_KEYWORD))]


def responder(request: Any) -> str:
    """For ``dsr_core.testing.server``: answers by the output fields the prompt asks for."""
    outputs = request.output_fields
    if "code" in outputs:
        return request.reply(code=answer_code(request))
    if "observations" in outputs:
        return request.reply(observations=observation(request))
    if "summary" in outputs:
        return request.reply(summary=SUMMARY)
    if "program_description" in outputs:
        return request.reply(program_description=PROGRAM_DESCRIPTION)
    if "module_description" in outputs:
        return request.reply(module_description=MODULE_DESCRIPTION)
    if "proposed_instruction" in outputs:
        return request.reply(proposed_instruction=instruction(request))
    first = next(iter(request.inputs.values()), "")
    return request.reply(**{name: first for name in outputs})
