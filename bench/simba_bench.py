"""SIMBA, dsr vs DSPy 3.4.1: wall time, LM requests, final validation score, side by side.

    python bench/simba_bench.py [--quick] [--repeats 3] [--json results.json] [--max-wait 300]

Run it with the dsr interpreter. DSPy runs under ``$DSPY_PYTHON``, else ``bench/.venv-dspy/bin/python``
(``bash bench/setup_dspy.sh``).

The task, its feedback metric and the test server's responder are in ``simba_task.py``. The responder
counts the requests it has seen (its temperature-1.0 answers vary with that count), so every measurement
gets a fresh test server (``python -m dsr_core.testing.server --latency 0.1 --responder
bench.simba_task:responder``, its own process) as well as a fresh process (``simba_dspy_side.py`` or
``simba_dsr_side.py``) with fresh, empty cache directories (``DSPY_CACHEDIR``, ``DSR_CACHE_DIR``) and both
LM caches off; the configurations take turns, ``--repeats`` rounds. Same data (32 training, 32
validation examples), ``bsize`` (16), ``num_candidates`` (6), ``max_steps`` (8), seed (0) and server on
every side; everything else is each side's default (``num_threads``, except in the row that sets DSPy's).
No valset goes to ``compile`` (DSPy's takes none): both score the winners on the trainset. LM requests
are the requests the server received during ``compile`` (after each side's warm-up call). The final
validation score is the returned program scored by each side's own ``Evaluate`` on the 32 validation
examples. Prints markdown to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DSR_PYTHON, LMServer, dspy_python, median_run, run_side, span  # noqa: E402
from run import Quiet, cache_dirs, log, machine  # noqa: E402
from simba_task import BSIZE, MAX_STEPS, NUM_CANDIDATES, SEED  # noqa: E402

LATENCY = 0.1
RESPONDER = "bench.simba_task:responder"

# (key, label, side, arguments); "dspy" runs simba_dspy_side.py, "dsr" simba_dsr_side.py
FULL_PLAN: list[tuple[str, str, str, list[str]]] = [
    ("dspy", "DSPy `dspy.SIMBA` (default num_threads: 8)", "dspy", []),
    ("dspy-32", "DSPy `dspy.SIMBA`, num_threads=32", "dspy", ["--num-threads", "32"]),
    ("dsr", "dsr `SIMBA.compile` (defaults)", "dsr", []),
]


def measure(
    plan: list[tuple[str, str, str, list[str]]], repeats: int, dspy_py: str, quiet: Quiet, seed: int
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in plan}
    for round_ in range(repeats):
        for key, _, side, args in plan:
            python, script = (dspy_py, "simba_dspy_side.py") if side == "dspy" else (DSR_PYTHON, "simba_dsr_side.py")
            quiet.wait()
            log(f"round {round_ + 1}/{repeats}: {key}")
            with LMServer(latency=LATENCY, responder=RESPONDER) as server, cache_dirs() as env:
                result = run_side(
                    python,
                    script,
                    [
                        *args,
                        *("--bsize", str(BSIZE), "--num-candidates", str(NUM_CANDIDATES)),
                        *("--max-steps", str(MAX_STEPS), "--seed", str(seed), "--url", server.url),
                    ],
                    env,
                    900,
                )
            log(
                f"  {result['seconds']:.2f} s, {result['lm_calls']} requests, final val "
                f"{result['final_val_score']:.2f}, final train scores {result['final_train_scores']}"
            )
            runs[key].append(result)
    return runs


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by wall time, with the spread of every figure and each run's best winner on train."""
    chosen = median_run(runs, ("seconds", "lm_calls", "final_val_score"))
    chosen["best_train_all"] = [max(r["final_train_scores"]) for r in runs]
    return chosen


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    rows = results["rows"]
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}; dsr {m['dsr_commit']}; DSPy {m['dspy']}. "
        f"Server latency {1000 * LATENCY:.0f} ms; bsize {BSIZE}, num_candidates {NUM_CANDIDATES}, max_steps "
        f"{MAX_STEPS}, seed {results['seed']}. {results['repeats']} run(s) per configuration, each in a fresh "
        "process against a fresh server, taking turns; median, range in brackets. Busiest the machine was "
        f"(other work) when a measurement started: {100 * results['busy_before']:.0f}%.",
        "",
        "| run | wall time (s) | final val score | best winner's train score | LM requests (server) | chosen program |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, label, *_ in results["plan"]:
        row = rows[key]
        keywords = sorted(
            {k for text in row["instructions"].values() for k in ("backwards", "capitals", "dashes") if k in text}
        )
        demos = sum(row["chosen"]["n_demos"].values())
        lines.append(
            f"| {label} | {span(row, 'seconds', '.2f')} | {span(row, 'final_val_score', '.2f')} | "
            f"{span(row, 'best_train', '.2f')} | {span(row, 'lm_calls', 'd')} | "
            f"rules: {', '.join(keywords) or 'none'}; {demos} demos |"
        )
    lines.append("")
    for key, label, side, _ in results["plan"]:
        if side != "dsr":
            continue
        row = rows[key]
        for ref_key in [k for k, _, s, _ in results["plan"] if s == "dspy"]:
            ref = rows[ref_key]
            speedup = ref["seconds_median"] / row["seconds_median"]
            score_ok = row["final_val_score_median"] >= ref["final_val_score_median"]
            met = speedup >= 2 and score_ok
            lines.append(
                f"- {label} vs {ref_key}: {speedup:.2f}x faster; final val score {row['final_val_score_median']:.2f} "
                f"vs {ref['final_val_score_median']:.2f} → 2x target with an equal or better score: "
                f"{'**met**' if met else '**not met**'}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of every configuration")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations (default 3)")
    parser.add_argument("--only", nargs="*", help="run only these configuration keys (plus dspy)")
    parser.add_argument("--seed", type=int, default=SEED, help="the seed on every side")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--max-wait", type=float, default=300, help="wait up to this long for other load to go")
    args = parser.parse_args()
    dspy_py = dspy_python()
    plan = [p for p in FULL_PLAN if not args.only or p[0] in args.only or p[0] == "dspy"]
    repeats = 1 if args.quick else args.repeats
    quiet = Quiet(max_wait=args.max_wait)
    runs = measure(plan, repeats, dspy_py, quiet, args.seed)
    results = {
        "machine": machine(dspy_py),
        "repeats": repeats,
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
