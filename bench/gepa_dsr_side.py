"""The dsr side of the GEPA benchmark (run with the dsr interpreter; ``bench/gepa_bench.py`` runs it).

    python bench/gepa_dsr_side.py --url http://127.0.0.1:PORT/v1 [--num-proposals 1]

``dsr_core.optimizers.GEPA(metric, max_metric_calls=400, reflection_lm=..., reflection_minibatch_size=3,
seed=0, num_proposals=N).compile(program, trainset, valset)`` in process, on the two-step task of
``gepa_task.py`` against the test server (``--responder bench.gepa_task:responder``). Everything else is
dsr's default: LM ``max_concurrency`` and compile ``concurrency``, ``candidate_selection_strategy``,
``use_merge``, ``skip_perfect_score``. The task and reflection LMs are two ``dsr.LM`` objects on the same
server with their cache off. Then the compiled program is scored with ``dsr.Evaluate`` (default
concurrency) on the validation set. One warm-up call first (not counted: the server's counters are reset
after it). Prints one JSON line: wall time of ``compile``, server requests during it, metric calls, the
final validation score and the run's candidates.
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
from gepa_task import (  # noqa: E402
    MAX_METRIC_CALLS,
    MINIBATCH,
    SEED,
    make_dsr_program,
    make_feedback_metric,
    rows,
    score_metric,
)

import dsr_core as dsr  # noqa: E402


def examples(split: str) -> list[dsr.Example]:
    return [dsr.Example(**row).with_inputs("word") for row in rows(split)]


def instructions(program: Any) -> dict[str, str]:
    state = program.dump_state()
    return {k: v["signature"]["instructions"] for k, v in state.items() if k != "metadata" and isinstance(v, dict)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the test server (.../v1)")
    parser.add_argument("--num-proposals", type=int, default=1, help="GEPA num_proposals (iterations at once)")
    parser.add_argument("--max-metric-calls", type=int, default=MAX_METRIC_CALLS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()

    from dsr_core.optimizers import GEPA

    lm = dsr.LM("test", api_base=args.url, cache=False, num_retries=0)
    reflection_lm = dsr.LM("reflect", api_base=args.url, cache=False, num_retries=0)
    dsr.configure(lm=lm)
    trainset, valset = examples("train"), examples("val")
    make_dsr_program()(word="warmup")  # SDK import, client and first connection; not a benchmark word
    server_reset(args.url)

    optimizer = GEPA(
        make_feedback_metric(dsr.Prediction),
        max_metric_calls=args.max_metric_calls,
        reflection_lm=reflection_lm,
        reflection_minibatch_size=MINIBATCH,
        seed=args.seed,
        num_proposals=args.num_proposals,
    )
    states: list[Any] = []
    tell = optimizer.tell

    def recording_tell(state: Any, results: list[Any]) -> Any:  # keeps the last state
        new = tell(state, results)
        states.append(new)
        return new

    optimizer.tell = recording_tell  # type: ignore[method-assign]
    started = time.perf_counter()
    compiled = optimizer.compile(make_dsr_program(), trainset, valset)
    seconds = time.perf_counter() - started
    stats = server_stats(args.url)

    final = dsr.Evaluate(valset, score_metric, progress=False)(compiled)
    state = states[-1]
    history = list(state.history)
    result = {
        "side": "dsr",
        "num_proposals": args.num_proposals,
        "seconds": seconds,
        "steps": len(states),
        "lm_calls": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "final_val_score": float(final.score),
        "best_score": state.best_score,
        "metric_calls": state.metric_calls + state.discarded_metric_calls,
        "budget_metric_calls": state.metric_calls,
        "discarded_metric_calls": state.discarded_metric_calls,
        "iterations": len(history),
        "outcomes": {o: sum(it.outcome == o for it in history) for o in sorted({str(it.outcome) for it in history})},
        "candidates": len(state.candidates),
        "merges_accepted": sum(c.origin == "merge" for c in state.candidates),
        "mutations_accepted": sum(c.origin == "mutation" for c in state.candidates),
        "instructions": instructions(compiled),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
