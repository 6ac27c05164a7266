"""The DSPy side of the MIPROv2 benchmark (run with the DSPy interpreter; ``bench/mipro.py`` runs it).

    bench/.venv-dspy/bin/python bench/mipro_dspy_side.py --url http://127.0.0.1:PORT/v1 [--threads 64] [--no-cache]

``dspy.MIPROv2(metric, auto="light", seed=9, num_threads=THREADS)`` compiles the word -> code program of
``mipro_task.py`` against the test server (started with ``--responder bench.mipro_task:responder``), then
the compiled program is evaluated on the validation set. One warm-up call first (its request is not
counted). Prints one JSON line: wall time of ``compile``, server requests during it, the final validation
score and what MIPROv2 chose. ``DSPY_CACHEDIR`` must be set before this process starts (a fresh directory
per run); DSPy's cache is on, as by default, unless ``--no-cache``. Needs optuna in the DSPy environment
(``bench/.venv-dspy/bin/python -m pip install optuna==5.0.0``, the version dsr uses).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# DSPy fetches a model-price map from the internet on its first call; use the bundled copy instead.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

import dspy  # noqa: E402
from common import server_reset, server_stats  # noqa: E402
from mipro_task import SEED, metric, rows  # noqa: E402


class WordCode(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict("word -> code")

    def forward(self, word: str) -> Any:
        return self.predict(word=word)


def examples(split: str) -> list[dspy.Example]:
    return [dspy.Example(**row).with_inputs("word") for row in rows(split)]


def timed_phase(method: Any, phase: str, phases: dict[str, float]) -> Any:
    """``method``, adding its wall time to ``phases[phase]``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - started

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the test server (.../v1)")
    parser.add_argument("--threads", type=int, default=64, help="MIPROv2 num_threads (and the final Evaluate's)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-cache", action="store_true", help="switch DSPy's memory and disk caches off")
    parser.add_argument("--verbose", action="store_true", help="MIPROv2's progress log on stderr")
    args = parser.parse_args()
    logging.getLogger("dspy").setLevel(logging.INFO if args.verbose else logging.WARNING)

    cache = not args.no_cache
    if not cache:
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/test", api_base=args.url, api_key="x", cache=cache, num_retries=0)
    dspy.configure(lm=lm)
    trainset, valset = examples("train"), examples("val")

    WordCode()(word="warmup")  # SDK import, client and first connection; not a benchmark word
    server_reset(args.url)

    optimizer = dspy.MIPROv2(metric=metric, auto="light", seed=args.seed, num_threads=args.threads)
    phases: dict[str, float] = {}
    for method, phase in (
        ("_bootstrap_fewshot_examples", "bootstrap"),
        ("_propose_instructions", "propose"),
        ("_optimize_prompt_parameters", "trials"),
    ):
        setattr(optimizer, method, timed_phase(getattr(optimizer, method), phase, phases))
    started = time.perf_counter()
    compiled = optimizer.compile(WordCode(), trainset=trainset, valset=valset)
    seconds = time.perf_counter() - started
    stats = server_stats(args.url)

    evaluate = dspy.Evaluate(
        devset=valset, metric=metric, num_threads=args.threads, display_progress=False, display_table=False
    )
    final = float(evaluate(compiled).score)
    logs = getattr(compiled, "trial_logs", {}) or {}
    predictor = compiled.predictors()[0]
    result = {
        "side": "dspy",
        "threads": args.threads,
        "cache": cache,
        "seconds": seconds,
        "phases": phases,
        "lm_calls": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "final_val_score": final,
        "best_score": float(getattr(compiled, "score", float("nan"))),
        "trials": len(logs),
        "minibatch_trials": sum("mb_score" in t for t in logs.values()),
        "full_evals": sum("full_eval_score" in t for t in logs.values()),
        "instruction": predictor.signature.instructions,
        "demos": len(predictor.demos),
        "dspy": dspy.__version__,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
