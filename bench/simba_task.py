"""The SIMBA benchmark's task: data, metric, the dsr program and the test server's responder.

The task: ``word -> code`` in one predictor (``encode``): the word backwards, in capitals, with a dash
between letters (``"tamiro" -> "O-R-I-M-A-T"``). The words are invented (seeded, no palindromes): 32 for
training and 32 for validation.

The score is a third of a point for each of three aspects of the code: written ``backwards``, in
``capitals``, with ``dashes``. The metric returns ``Prediction(score=..., feedback=...)``; the feedback
names the keyword of each aspect the code got wrong (``The instruction must mention 'dashes'.``).

The responder plays a language model that gets each aspect right:

- always, when the step's instruction mentions the aspect's keyword (a rule can teach it);
- otherwise, when some of the prompt's demos show the aspect done right (``n`` of them), with probability
  ``1 - (1 - P_DEMO) ** n`` (a demo can teach it), decided by a hash of the word, the aspect and ``n``;
- otherwise never, at any temperature other than 1.0;
- and at temperature 1.0 (SIMBA's sampling models), an aspect not right by the rules above is right by
  chance with probability ``P_LUCK``: the k-th time the server sees a request (its messages) it decides by a
  hash of the request, k and the aspect, so the same program sampled several times on an example gives
  different trajectories, whatever order the requests arrive in. The count lives in the server process:
  start one server per measurement (``bench/simba_bench.py`` does).

None of it depends on the instruction's exact wording or on the framework, so both meet the same odds for
the same keywords and demos. The program as given scores 0 (no keyword, no demo); 100 needs all three
keywords (or luckier demos).

As the prompt model it answers SIMBA's ``OfferFeedback`` prompt (DSPy 3.4.1's through its ChatAdapter, or
JSONAdapter on a retry; dsr's in chat format): it reads the worse and the better trajectory's reward info
(the metric's feedback) and advises, for every module, one keyword: the first (in ``KEYWORDS`` order) that
the worse trajectory was told it lacks and the better one was not (what the contrast shows) and that the
module's current instructions (``modules_defn``) do not mention yet; "Answer carefully." when there is
none. So one rule teaches one aspect: 100 takes three rules built on each other (or rules and demos).

Standard library only: both interpreters import it (``make_dsr_program`` imports dsr_core when called).
Run the server with ``python -m dsr_core.testing.server --latency 0.1 --responder bench.simba_task:responder``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections import Counter
from typing import Any

SEED = 0  # DSPy's compile(seed=0) default, on both sides
N_TRAIN, N_VAL = 32, 32
DATA_SEED = 777
BSIZE = 16
NUM_CANDIDATES = 6  # DSPy's default
MAX_STEPS = 8  # DSPy's default

KEYWORDS = ("backwards", "capitals", "dashes")
P_DEMO = 0.6
P_LUCK = 1 / 3


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


def code_of(word: str) -> str:
    return "-".join(word[::-1].upper())


def rows(split: str) -> list[dict[str, str]]:
    """``[{"word", "code"}]`` for ``split`` in ("train", "val")."""
    all_words = words(N_TRAIN + N_VAL)
    chosen = all_words[:N_TRAIN] if split == "train" else all_words[N_TRAIN:]
    return [{"word": w, "code": code_of(w)} for w in chosen]


# -- the metric ------------------------------------------------------------------------------------------------------
def aspects_right(word: str, output: str) -> dict[str, bool]:
    """Which aspects ``output`` gets right as the code of ``word``."""
    output = output.strip()
    letters = output.replace("-", "")
    known = letters.lower() in (word.lower(), word[::-1].lower()) and bool(letters)
    return {
        "backwards": known and letters.lower() == word[::-1].lower(),
        "capitals": known and letters == letters.upper(),
        "dashes": known and len(letters) > 1 and output == "-".join(letters),
    }


def score_and_feedback(gold: Any, pred: Any) -> tuple[float, str]:
    output = str(getattr(pred, "code", "") or "") if pred is not None else ""
    right = aspects_right(gold.word, output)
    score = sum(right.values()) / len(right)
    missing = [k for k in KEYWORDS if not right[k]]
    if not missing:
        return score, "Correct."
    return score, "Wrong. " + " ".join(f"The instruction must mention '{k}'." for k in missing)


def make_feedback_metric(prediction_class: Any) -> Any:
    """SIMBA's metric for a framework, built on its ``Prediction`` class (score plus feedback)."""

    def metric(gold: Any, pred: Any, trace: Any = None) -> Any:
        score, feedback = score_and_feedback(gold, pred)
        return prediction_class(score=score, feedback=feedback)

    return metric


def score_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    """The same score without feedback, for the final ``Evaluate`` on either side."""
    return score_and_feedback(example, prediction)[0]


# -- programs --------------------------------------------------------------------------------------------------------
def make_dsr_program() -> Any:
    """The dsr program: one ``encode`` predictor."""
    import dsr_core as dsr

    class Encoder(dsr.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = dsr.Predict("word -> code")

        async def aforward(self, word: str) -> Any:
            return await self.encode.acall(word=word)

    return Encoder()


# -- the responder ---------------------------------------------------------------------------------------------------
def unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


_seen: Counter[str] = Counter()
_lock = threading.Lock()


def write(word: str, right: dict[str, bool]) -> str:
    text = word[::-1] if right["backwards"] else word
    text = text.upper() if right["capitals"] else text.lower()
    return "-".join(text) if right["dashes"] else text


def task_answer(request: Any) -> str:
    word = request.inputs.get("word", "").strip()
    instruction = request.instructions.lower()
    shown = Counter()
    for inputs, outputs in request.demos:
        demo_right = aspects_right(inputs.get("word", "").strip(), outputs.get("code", ""))
        shown.update(k for k, ok in demo_right.items() if ok)
    right = {}
    for k in KEYWORDS:
        if k in instruction:
            right[k] = True
        elif shown[k]:
            right[k] = unit(word, k, "demo", str(shown[k])) < 1 - (1 - P_DEMO) ** shown[k]
        else:
            right[k] = False
    if request.body.get("temperature") == 1.0 and not all(right.values()):
        key = json.dumps(request.messages, sort_keys=True)
        with _lock:
            count = _seen[key]
            _seen[key] += 1
        for k in KEYWORDS:
            if not right[k]:
                right[k] = unit(key, str(count), k) < P_LUCK
    return write(word, right)


def asked_for(info: str) -> set[str]:
    return set(re.findall(r"must mention '(\w+)'", info))


def advise(request: Any) -> str:
    inputs = request.inputs
    worse, better = asked_for(inputs.get("worse_reward_info", "")), asked_for(inputs.get("better_reward_info", ""))
    defined = inputs.get("modules_defn", "").lower()
    keywords = [k for k in KEYWORDS if k in worse and k not in better and k not in defined]
    advice = f"If the module receives a word, its code should be: {keywords[0]}." if keywords else "Answer carefully."
    try:
        names = json.loads(inputs.get("module_names", "[]"))
    except ValueError:
        names = re.findall(r"\w+", inputs.get("module_names", ""))
    return request.reply(
        discussion="The worse trajectory missed what the better one did.", module_advice=dict.fromkeys(names, advice)
    )


def responder(request: Any) -> str:
    """For ``dsr_core.testing.server``: the task step and the OfferFeedback prompt of dsr and DSPy."""
    outputs = request.output_fields
    if "module_advice" in outputs:
        return advise(request)
    if "code" in outputs:
        return request.reply(code=task_answer(request))
    first = next(iter(request.inputs.values()), "")
    return request.reply(**{name: first for name in outputs})
