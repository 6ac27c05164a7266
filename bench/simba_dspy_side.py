"""The DSPy side of the SIMBA benchmark (run with the DSPy interpreter; ``bench/simba_bench.py`` runs it).

    $DSPY_PYTHON bench/simba_dspy_side.py --url http://127.0.0.1:PORT/v1 [--num-threads N]

``dspy.SIMBA(metric=..., bsize=16, num_candidates=6, max_steps=8).compile(program, trainset=...,
seed=0)`` on the one-predictor program of ``simba_task.py`` against the test server (started with
``--responder bench.simba_task:responder``); everything else is DSPy's default (``max_demos`` 4, the
temperatures, ``num_threads`` None, which leaves ``dspy.Parallel`` to ``dspy.settings.num_threads``, 8;
the prompt model, the configured LM). The LM is ``dspy.LM("openai/test", api_base=..., cache=False)``, and
DSPy's memory and disk caches are off. Then the compiled program is scored with ``dspy.Evaluate`` (default
``num_threads``) on the validation set. One warm-up call first (its request is not counted). Prints one
JSON line: wall time of ``compile``, server requests during it, the final validation score and what the
run chose.
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
from simba_task import BSIZE, MAX_STEPS, NUM_CANDIDATES, SEED, make_feedback_metric, rows, score_metric  # noqa: E402


class Encoder(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encode = dspy.Predict("word -> code")

    def forward(self, word: str) -> Any:
        return self.encode(word=word)


def examples(split: str) -> list[dspy.Example]:
    return [dspy.Example(**row).with_inputs("word") for row in rows(split)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the test server (.../v1)")
    parser.add_argument("--bsize", type=int, default=BSIZE)
    parser.add_argument("--num-candidates", type=int, default=NUM_CANDIDATES)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--num-threads", type=int, default=None, help="SIMBA num_threads (None: DSPy's default)")
    parser.add_argument("--verbose", action="store_true", help="SIMBA's progress log on stderr")
    args = parser.parse_args()
    logging.getLogger("dspy").setLevel(logging.INFO if args.verbose else logging.WARNING)

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/test", api_base=args.url, api_key="x", cache=False, num_retries=0)
    dspy.configure(lm=lm)
    trainset, valset = examples("train"), examples("val")

    Encoder()(word="warmup")  # SDK import, client and first connection; not a benchmark word
    server_reset(args.url)

    optimizer = dspy.SIMBA(
        metric=make_feedback_metric(dspy.Prediction),
        bsize=args.bsize,
        num_candidates=args.num_candidates,
        max_steps=args.max_steps,
        num_threads=args.num_threads,
    )
    started = time.perf_counter()
    compiled = optimizer.compile(Encoder(), trainset=trainset, seed=args.seed)
    seconds = time.perf_counter() - started
    stats = server_stats(args.url)

    evaluate = dspy.Evaluate(devset=valset, metric=score_metric, display_progress=False, display_table=False)
    final = float(evaluate(compiled).score)
    logs = compiled.trial_logs
    result = {
        "side": "dspy",
        "num_threads": args.num_threads,
        "seconds": seconds,
        "lm_calls": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "final_val_score": final,
        "final_train_scores": sorted(round(100 * c["score"], 2) for c in compiled.candidate_programs),
        "train_scores_by_step": {str(k): v.get("train_score") for k, v in logs.items() if "train_score" in v},
        "chosen": {"n_demos": {name: len(p.demos) for name, p in compiled.named_predictors()}},
        "instructions": {name: p.signature.instructions for name, p in compiled.named_predictors()},
        "dspy": dspy.__version__,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
