"""GEPA, dsr vs DSPy 3.4.1: wall time, LM requests, metric calls, final validation score, side by side.

    python bench/gepa_bench.py [--quick] [--repeats 3] [--json results.json] [--max-wait 300]

Run it with the dsr interpreter. DSPy runs under ``$DSPY_PYTHON``, else ``bench/.venv-dspy/bin/python``
(``bash bench/setup_dspy.sh``); that environment needs the ``gepa`` package at the version DSPy 3.4.1 pins
(``$DSPY_PYTHON -m pip install gepa==0.1.4``).

One test server for everything (``python -m dsr_core.testing.server --latency 0.1 --responder
bench.gepa_task:responder``, its own process): the task, its feedback metric and the responder are in
``gepa_task.py``. Each measurement is a fresh process (``gepa_dspy_side.py`` or ``gepa_dsr_side.py``), one at
a time, with fresh, empty cache directories (``DSPY_CACHEDIR``, ``DSR_CACHE_DIR``) and both LM caches off;
the configurations take turns, ``--repeats`` rounds. Same data (30 training, 30 validation examples),
seed (0), ``max_metric_calls`` (400), ``reflection_minibatch_size=3`` and server on every side; everything
else is each side's default. LM requests are the requests the server received during ``compile`` (after
each side's warm-up call). Metric calls are what the optimizer counted (dsr: the budget's count plus what
its dropped speculative iterations spent). The final validation score is the returned program scored by
each side's own ``Evaluate`` on the 30 validation examples. Prints markdown to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DSR_PYTHON, LMServer, dspy_python, median_run, run_side, span  # noqa: E402
from gepa_task import MAX_METRIC_CALLS, SEED  # noqa: E402
from run import Quiet, cache_dirs, log, machine  # noqa: E402

LATENCY = 0.1
RESPONDER = "bench.gepa_task:responder"
CHOSEN_PROPOSALS = 4

# (key, label, side, arguments); "dspy" runs gepa_dspy_side.py, "dsr" gepa_dsr_side.py
FULL_PLAN: list[tuple[str, str, str, list[str]]] = [
    ("dspy", "DSPy `dspy.GEPA` (default num_threads)", "dspy", []),
    ("dsr-1", "dsr `GEPA.compile`, num_proposals=1", "dsr", ["--num-proposals", "1"]),
    (
        f"dsr-{CHOSEN_PROPOSALS}",
        f"dsr `GEPA.compile`, num_proposals={CHOSEN_PROPOSALS}",
        "dsr",
        ["--num-proposals", str(CHOSEN_PROPOSALS)],
    ),
    ("dsr-8", "dsr `GEPA.compile`, num_proposals=8", "dsr", ["--num-proposals", "8"]),
]


def measure(
    plan: list[tuple[str, str, str, list[str]]], repeats: int, dspy_py: str, quiet: Quiet, budget: int, seed: int
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in plan}
    with LMServer(latency=LATENCY, responder=RESPONDER) as server:
        for round_ in range(repeats):
            for key, _, side, args in plan:
                python, script = (dspy_py, "gepa_dspy_side.py") if side == "dspy" else (DSR_PYTHON, "gepa_dsr_side.py")
                quiet.wait()
                log(f"round {round_ + 1}/{repeats}: {key}")
                with cache_dirs() as env:
                    server.reset()
                    result = run_side(
                        python,
                        script,
                        [*args, "--max-metric-calls", str(budget), "--seed", str(seed), "--url", server.url],
                        env,
                        900,
                    )
                log(
                    f"  {result['seconds']:.2f} s, {result['lm_calls']} requests, {result['metric_calls']} metric "
                    f"calls, final val {result['final_val_score']:.1f}"
                )
                runs[key].append(result)
    return runs


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by wall time, with the spread of every figure."""
    return median_run(runs, ("seconds", "lm_calls", "final_val_score", "metric_calls"))


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    rows = results["rows"]
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}; dsr {m['dsr_commit']}; DSPy {m['dspy']}. "
        f"Server latency {1000 * LATENCY:.0f} ms; max_metric_calls {results['budget']}, seed {results['seed']}. {results['repeats']} run(s) "
        "per configuration, in fresh processes taking turns; median, range in brackets. Busiest the machine was "
        f"(other work) when a measurement started: {100 * results['busy_before']:.0f}%.",
        "",
        "| run | wall time (s) | final val score | metric calls | LM requests (server) | candidates "
        "(mutations + merges accepted) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, label, *_ in results["plan"]:
        row = rows[key]
        lines.append(
            f"| {label} | {span(row, 'seconds', '.2f')} | {span(row, 'final_val_score', '.1f')} | "
            f"{span(row, 'metric_calls', '.0f')} | {span(row, 'lm_calls', '.0f')} | {row['candidates']} "
            f"({row['mutations_accepted']} + {row['merges_accepted']}) |"
        )
    dspy_row = rows["dspy"]
    lines.append("")
    for key, label, side, _ in results["plan"]:
        if side != "dsr":
            continue
        row = rows[key]
        speedup = dspy_row["seconds_median"] / row["seconds_median"]
        score_ok = row["final_val_score_median"] >= dspy_row["final_val_score_median"]
        met = speedup >= 2 and score_ok
        lines.append(
            f"- {label}: {speedup:.2f}x faster than DSPy; final val score {row['final_val_score_median']:.1f} vs "
            f"{dspy_row['final_val_score_median']:.1f} → 2x target with an equal or better score: "
            f"{'**met**' if met else '**not met**'}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of every configuration")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations (default 3)")
    parser.add_argument("--only", nargs="*", help="run only these configuration keys")
    parser.add_argument("--max-metric-calls", type=int, default=MAX_METRIC_CALLS, help="the budget on every side")
    parser.add_argument("--seed", type=int, default=SEED, help="GEPA's seed on every side")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--max-wait", type=float, default=300, help="wait up to this long for other load to go")
    args = parser.parse_args()
    dspy_py = dspy_python()
    plan = [p for p in FULL_PLAN if not args.only or p[0] in args.only or p[0] == "dspy"]
    repeats = 1 if args.quick else args.repeats
    quiet = Quiet(max_wait=args.max_wait)
    runs = measure(plan, repeats, dspy_py, quiet, args.max_metric_calls, args.seed)
    results = {
        "machine": machine(dspy_py),
        "repeats": repeats,
        "budget": args.max_metric_calls,
        "seed": args.seed,
        "plan": plan,
        "runs": runs,
        "rows": {key: summarize(r) for key, r in runs.items()},
        "busy_before": quiet.worst.get("", 0.0),
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(render(results))


if __name__ == "__main__":
    main()
