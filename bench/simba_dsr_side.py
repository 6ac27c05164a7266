"""The dsr side of the SIMBA benchmark (run with the dsr interpreter; ``bench/simba_bench.py`` runs it).

    python bench/simba_dsr_side.py --url http://127.0.0.1:PORT/v1

``dsr_core.optimizers.SIMBA(metric, bsize=16, num_candidates=6, max_steps=8, seed=0).compile(program,
trainset)`` in process, on the one-predictor task of ``simba_task.py`` against the test server
(``--responder bench.simba_task:responder``). No valset is passed, as DSPy's ``compile`` takes none: the
winners are scored on the trainset at the end on both sides. Everything else is dsr's default:
``max_demos`` 4, the temperatures, ``num_threads`` (None: compile concurrency 32), the prompt model (the
configured LM). The LM is a ``dsr.LM`` on the server with its cache off. Then the compiled program is
scored with ``dsr.Evaluate`` (default concurrency) on the validation set. One warm-up call first (not
counted: the server's counters are reset after it). Prints one JSON line: wall time of ``compile``, server
requests during it, the final validation score and what the run chose.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import server_reset, server_stats  # noqa: E402
from simba_task import (  # noqa: E402
    BSIZE,
    MAX_STEPS,
    NUM_CANDIDATES,
    SEED,
    make_dsr_program,
    make_feedback_metric,
    rows,
    score_metric,
)

import dsr_core as dsr  # noqa: E402


def examples(split: str) -> list[dsr.Example]:
    return [dsr.Example(**row).with_inputs("word") for row in rows(split)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the test server (.../v1)")
    parser.add_argument("--bsize", type=int, default=BSIZE)
    parser.add_argument("--num-candidates", type=int, default=NUM_CANDIDATES)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--num-threads", type=int, default=None, help="SIMBA num_threads (None: dsr's default)")
    args = parser.parse_args()

    from dsr_core.optimizers import SIMBA

    lm = dsr.LM("test", api_base=args.url, cache=False, num_retries=0)
    dsr.configure(lm=lm)
    trainset, valset = examples("train"), examples("val")
    make_dsr_program()(word="warmup")  # SDK import, client and first connection; not a benchmark word
    server_reset(args.url)

    optimizer = SIMBA(
        make_feedback_metric(dsr.Prediction),
        bsize=args.bsize,
        num_candidates=args.num_candidates,
        max_steps=args.max_steps,
        seed=args.seed,
        num_threads=args.num_threads,
    )
    states: list[Any] = []
    tell = optimizer.tell

    def recording_tell(state: Any, results: list[Any]) -> Any:  # keeps the last state
        new = tell(state, results)
        states.append(new)
        return new

    optimizer.tell = recording_tell  # type: ignore[method-assign]
    started = time.perf_counter()
    compiled = optimizer.compile(make_dsr_program(), trainset)
    seconds = time.perf_counter() - started
    stats = server_stats(args.url)

    final = dsr.Evaluate(valset, score_metric, progress=False)(compiled)
    state = states[-1]
    best = state.final[state.final_scores.index(max(state.final_scores))]
    program = state.programs[best]
    result = {
        "side": "dsr",
        "seconds": seconds,
        "lm_calls": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "final_val_score": float(final.score),
        "final_train_scores": [round(100 * s, 2) for s in state.final_scores],
        "step_scores": [round(100 * max(r.scores), 2) if r.scores else None for r in state.history],
        "candidates": len(state.programs) - 1,
        "rules": sum(p.strategy == "append_a_rule" and p.applied for p in state.programs),
        "demos_appended": sum(p.strategy == "append_a_demo" and p.applied for p in state.programs),
        "chosen": {"number": best, "step": program.step, "n_demos": {k: len(v) for k, v in program.demos.items()}},
        "instructions": program.instructions,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
