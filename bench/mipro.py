"""MIPROv2 auto="light", dsr vs DSPy 3.4.1: wall time, LM calls, final validation score, side by side.

    python bench/mipro.py [--quick] [--repeats 3] [--json results.json] [--max-wait 300]

Run it with the dsr interpreter. DSPy runs under ``$DSPY_PYTHON``, else ``bench/.venv-dspy/bin/python``
(``bash bench/setup_dspy.sh``, plus ``bench/.venv-dspy/bin/python -m pip install optuna==5.0.0``: DSPy's
MIPROv2 needs optuna, which DSPy does not install by default; 5.0.0 is the version dsr uses).

One test server for everything (``python -m dsr_core.testing.server --latency 0.1 --responder
bench.mipro_task:responder``, its own process): the task and the responder are in ``mipro_task.py``. Each
measurement is a fresh process (``mipro_dspy_side.py`` or ``mipro_dsr_side.py``) with fresh, empty cache
directories (``DSPY_CACHEDIR``, ``DSR_CACHE_DIR``; both caches on, as by default), one at a time; the
configurations take turns, ``--repeats`` rounds. Same data, seed (9), ``auto="light"`` and server on
every side. LM calls are the requests the server received during the optimization (after each side's
warm-up call). The final validation score is the compiled program evaluated on all 100 validation examples.
Prints markdown to stdout, progress to stderr.
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

LATENCY = 0.1
RESPONDER = "bench.mipro_task:responder"
DSR_CONCURRENCY = 128

# (key, label, side, arguments); "dspy" runs mipro_dspy_side.py, "dsr" mipro_dsr_side.py
FULL_PLAN: list[tuple[str, str, str, list[str]]] = [
    ("dspy-32", "DSPy MIPROv2, num_threads=32", "dspy", ["--threads", "32"]),
    ("dspy-64", "DSPy MIPROv2, num_threads=64", "dspy", ["--threads", "64"]),
    ("dspy-128", "DSPy MIPROv2, num_threads=128", "dspy", ["--threads", "128"]),
    ("dsr", "dsr MIPROv2.compile, in process", "dsr", ["compile"]),
    ("dsr-pt5", "dsr MIPROv2.compile, parallel_trials=5", "dsr", ["compile", "--parallel-trials", "5"]),
    ("flow", "dsr optimize flow (Prefect), warm process", "dsr", ["flow"]),
    ("flow-s35", "dsr optimize flow, shard_size=35", "dsr", ["flow", "--shard-size", "35"]),
    ("flow-cold", "dsr optimize flow, first run in the process", "dsr", ["flow", "--cold"]),
]
QUICK_KEYS = ("dspy-64", "dsr", "flow")


def measure(plan: list[tuple[str, str, str, list[str]]], repeats: int, dspy_py: str, quiet: Quiet) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in plan}
    with LMServer(latency=LATENCY, responder=RESPONDER) as server:
        for round_ in range(repeats):
            for key, _, side, args in plan:
                python, script = (
                    (dspy_py, "mipro_dspy_side.py") if side == "dspy" else (DSR_PYTHON, "mipro_dsr_side.py")
                )
                if side == "dsr":
                    args = [args[0], "--concurrency", str(DSR_CONCURRENCY), *args[1:]]
                quiet.wait()
                log(f"round {round_ + 1}/{repeats}: {key}")
                with cache_dirs() as env:
                    server.reset()
                    result = run_side(python, script, [*args, "--url", server.url], env, timeout=900)
                log(
                    f"  {result['seconds']:.2f} s, {result['lm_calls']} calls, "
                    f"final val {result['final_val_score']:.1f}"
                )
                runs[key].append(result)
    return runs


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by wall time, with the spread of every figure."""
    keys = ("seconds", "lm_calls", "final_val_score", "flow_wall_time", "prefect_startup", "warm_up_run")
    return median_run(runs, keys)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    rows = results["rows"]
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}; dsr {m['dsr_commit']}; DSPy {m['dspy']}. "
        f"Server latency {1000 * LATENCY:.0f} ms. {results['repeats']} run(s) per configuration, in fresh "
        "processes taking turns; median wall time, range in brackets. Busiest the machine was (other work) "
        f"when a measurement started: {100 * results['busy_before']:.0f}%.",
        "",
        "| run | wall time (s) | LM calls (server) | final val score | optimizer's best | trials (minibatch + full) "
        "| chosen instruction says 'backwards' | demos | time by phase (s, median run) |",
        "|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for key, label, *_ in results["plan"]:
        row = rows[key]
        trials = row["trials"]
        detail = (
            f"{trials} ({row['minibatch_trials']} + {row['full_evals']})" if "minibatch_trials" in row else f"{trials}"
        )
        lines.append(
            f"| {label} | {span(row, 'seconds', '.2f')} | {span(row, 'lm_calls', 'd')} | "
            f"{span(row, 'final_val_score', '.1f')} | {row['best_score']:.1f} | {detail} | "
            f"{'yes' if 'backwards' in row['instruction'].lower() else 'no'} | {row['demos']} | "
            + (", ".join(f"{name} {value:.2f}" for name, value in row.get("phases", {}).items()) or "–")
            + " |"
        )
    dspy_rows = [(key, rows[key]) for key, _, side, _ in results["plan"] if side == "dspy"]
    best_key, best = min(dspy_rows, key=lambda kv: kv[1]["seconds_median"])
    lines += ["", f"DSPy's fastest configuration: {best_key} ({best['seconds_median']:.2f} s, median)."]
    for key, label, side, _ in results["plan"]:
        if side != "dsr":
            continue
        row = rows[key]
        speedup = best["seconds_median"] / row["seconds_median"]
        score_ok = row["final_val_score_median"] >= best["final_val_score_median"]
        met = speedup >= 3 and score_ok
        lines.append(
            f"- {label}: {speedup:.2f}x faster than DSPy's fastest; final val score "
            f"{row['final_val_score_median']:.1f} vs {best['final_val_score_median']:.1f} → 3x target with an "
            f"equal or better score: {'**met**' if met else '**not met**'}"
        )
    flows = [(label, rows[key]) for key, label, _, args in results["plan"] if args and args[0] == "flow"]
    if flows:
        lines += [
            "",
            "| flow run | run_optimization (s) | the flow's own wall_time (s) | Prefect startup (s) | "
            "warm-up optimize run (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, row in flows:
            warm = span(row, "warm_up_run", ".2f") if row.get("warm_up_run_all") else "–"
            lines.append(
                f"| {label} | {span(row, 'seconds', '.2f')} | {span(row, 'flow_wall_time', '.2f')} | "
                f"{span(row, 'prefect_startup', '.2f')} | {warm} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"one round of {', '.join(QUICK_KEYS)} only")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations (default 3)")
    parser.add_argument("--only", nargs="*", help="run only these configuration keys")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--max-wait", type=float, default=300, help="wait up to this long for other load to go")
    args = parser.parse_args()
    dspy_py = dspy_python()
    plan = [p for p in FULL_PLAN if (p[0] in QUICK_KEYS if args.quick else True)]
    if args.only:
        plan = [p for p in plan if p[0] in args.only]
    repeats = 1 if args.quick else args.repeats
    quiet = Quiet(max_wait=args.max_wait)
    runs = measure(plan, repeats, dspy_py, quiet)
    results = {
        "machine": machine(dspy_py),
        "repeats": repeats,
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
