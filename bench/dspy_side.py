"""The DSPy side of the benchmarks (run with the DSPy interpreter, see ``setup_dspy.sh``).

    python bench/dspy_side.py {percall,evaluate,cached} --url http://127.0.0.1:PORT/v1 [--n N] ...

Prints one JSON line. The benchmarks themselves live in ``common.py``; this file only binds them to DSPy.
``DSPY_CACHEDIR`` must be set before this process starts (run.py gives every run a fresh one).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# DSPy fetches a model-price map from the internet on its first call; use the bundled copy instead.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

import dspy  # noqa: E402
from common import SIGNATURE, side_main  # noqa: E402
from dspy.evaluate import answer_exact_match  # noqa: E402


class DspyHarness:
    """``dspy.Predict`` with a ``dspy.LM`` set by ``dspy.configure``; both cache tiers on or both off."""

    def __init__(self, url: str, cache: bool, threads: int) -> None:
        self.threads = threads
        # lm(cache=False) alone still leaves the cache object in place; switch both tiers off (or on) too.
        dspy.configure_cache(enable_disk_cache=cache, enable_memory_cache=cache)
        dspy.configure(lm=dspy.LM("openai/test", api_base=url, api_key="x", cache=cache, num_retries=0))
        self.program = dspy.Predict(SIGNATURE)

    def ask(self, question: str) -> str:
        return self.program(question=question).answer

    def evaluator(self, pairs: list[tuple[str, str]]) -> Callable[[], dict[str, Any]]:
        devset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in pairs]
        evaluate = dspy.Evaluate(
            devset=devset,
            metric=answer_exact_match,
            num_threads=self.threads,
            display_progress=False,
            display_table=False,
        )

        def run() -> dict[str, Any]:
            return {"score": float(evaluate(self.program).score)}

        return run


if __name__ == "__main__":
    side_main(DspyHarness, "DSPy side of the dsr-vs-DSPy benchmarks")
