"""The DSPy side of the GEPA benchmark (run with the DSPy interpreter; ``bench/gepa_bench.py`` runs it).

    $DSPY_PYTHON bench/gepa_dspy_side.py --url http://127.0.0.1:PORT/v1

``dspy.GEPA(metric, max_metric_calls=400, reflection_lm=..., reflection_minibatch_size=3, seed=0)``
compiles the two-step program of ``gepa_task.py`` against the test server (started with ``--responder
bench.gepa_task:responder``); everything else is DSPy's default (``num_threads``, which leaves it to
``dspy.settings.num_threads``, 8; ``candidate_selection_strategy``, ``use_merge``, ``skip_perfect_score``,
DSPy's own ``InstructionProposer``). The task and reflection LMs are ``dspy.LM("openai/...",
api_base=..., cache=False)`` on the same server, and DSPy's memory and disk caches are off. Then the
compiled program is scored with ``dspy.Evaluate`` (default ``num_threads``) on the validation set. One
warm-up call first (its request is not counted). Prints one JSON line: wall time of ``compile``, server
requests during it, metric calls, the final validation score and the run's candidates. Needs the ``gepa``
package in the DSPy environment (DSPy 3.4.1 pins ``gepa==0.1.4``).
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

BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", BENCH)]  # DSPy first: nothing of ours shadows its imports

# DSPy fetches a model-price map from the internet on its first call; use the bundled copy instead.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

import dspy  # noqa: E402

sys.path.append(BENCH)

from common import server_reset, server_stats  # noqa: E402
from gepa_task import MAX_METRIC_CALLS, MINIBATCH, SEED, make_feedback_metric, rows, score_metric  # noqa: E402


class ReverseEncode(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.reverse = dspy.Predict("word -> reversed")
        self.encode = dspy.Predict("reversed -> code")

    def forward(self, word: str) -> Any:
        first = self.reverse(word=word)
        second = self.encode(reversed=first.reversed)
        return dspy.Prediction(reversed=first.reversed, code=second.code)


def examples(split: str) -> list[dspy.Example]:
    return [dspy.Example(**row).with_inputs("word") for row in rows(split)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the test server (.../v1)")
    parser.add_argument("--max-metric-calls", type=int, default=MAX_METRIC_CALLS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--verbose", action="store_true", help="GEPA's progress log on stderr")
    args = parser.parse_args()
    logging.getLogger("dspy").setLevel(logging.INFO if args.verbose else logging.WARNING)
    logging.getLogger("gepa").setLevel(logging.INFO if args.verbose else logging.WARNING)

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/test", api_base=args.url, api_key="x", cache=False, num_retries=0)
    reflection_lm = dspy.LM("openai/reflect", api_base=args.url, api_key="x", cache=False, num_retries=0)
    dspy.configure(lm=lm)
    trainset, valset = examples("train"), examples("val")

    ReverseEncode()(word="warmup")  # SDK import, client and first connection; not a benchmark word
    server_reset(args.url)

    optimizer = dspy.GEPA(
        metric=make_feedback_metric(dspy.Prediction),
        max_metric_calls=args.max_metric_calls,
        reflection_lm=reflection_lm,
        reflection_minibatch_size=MINIBATCH,
        seed=args.seed,
        track_stats=True,  # for the candidates and metric calls below; no LM calls of its own
    )
    started = time.perf_counter()
    compiled = optimizer.compile(ReverseEncode(), trainset=trainset, valset=valset)
    seconds = time.perf_counter() - started
    stats = server_stats(args.url)

    evaluate = dspy.Evaluate(devset=valset, metric=score_metric, display_progress=False, display_table=False)
    final = float(evaluate(compiled).score)
    details = compiled.detailed_results
    parents = details.parents
    result = {
        "side": "dspy",
        "seconds": seconds,
        "lm_calls": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "final_val_score": final,
        "best_score": round(100.0 * max(details.val_aggregate_scores), 4),
        "metric_calls": details.total_metric_calls,
        "full_val_evals": details.num_full_val_evals,
        "candidates": len(details.candidates),
        "merges_accepted": sum(1 for p in parents if p is not None and len([x for x in p if x is not None]) > 1),
        "mutations_accepted": sum(1 for p in parents if p is not None and len([x for x in p if x is not None]) == 1),
        "instructions": {name: pred.signature.instructions for name, pred in compiled.named_predictors()},
        "dspy": dspy.__version__,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
