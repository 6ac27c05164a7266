"""The dsr side of the MIPROv2 benchmark (run with the dsr interpreter; ``bench/mipro.py`` runs it).

    python bench/mipro_dsr_side.py compile --url http://127.0.0.1:PORT/v1 [--concurrency 128] [--parallel-trials 1]
    python bench/mipro_dsr_side.py flow --url http://127.0.0.1:PORT/v1 [--concurrency 128] [--max-workers 4]

``compile``: ``dsr_core.optimizers.MIPROv2(metric, auto="light", seed=9).compile(program, trainset, valset)``
in process, LM ``max_concurrency`` and compile ``concurrency`` both ``--concurrency``; then the compiled
program is evaluated on the validation set.

``flow``: the Prefect optimize flow (``flows.optimize.run_optimization``) with ``[optimizer] name =
"MIPROv2", auto = "light", seed = 9`` on the same data written as JSONL. Prefect's ephemeral server is
started first by an empty flow and timed separately (as ``bench/flow_evaluate.py`` does). The flow itself
ends with its own evaluation of the baseline and the optimized program on the validation set (inside the
timed run); its ``optimized_score`` is the final validation score.

Both: one warm-up call first (not counted: the server's counters are reset after it), the task of
``mipro_task.py`` against the test server (``--responder bench.mipro_task:responder``). ``DSR_CACHE_DIR``
must be a fresh directory per run; the LM cache is on, as by default, unless ``--no-cache``. Prints one JSON
line: wall time, server requests, final validation score, trials and what MIPROv2 chose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))  # the flow imports the program and metric as bench.mipro_task:...

from common import server_reset, server_stats, time_prefect_startup  # noqa: E402
from mipro_task import DATA_SEED, SEED, code_for, make_dsr_program, metric, rows, words, write_jsonl  # noqa: E402

import dsr_core as dsr  # noqa: E402


def examples(split: str) -> list[dsr.Example]:
    return [dsr.Example(**row).with_inputs("word") for row in rows(split)]


def chosen(program_state: dict[str, Any]) -> dict[str, Any]:
    """The instruction and the number of demos of the (one) predictor in a program state."""
    entry = next(v for k, v in program_state.items() if k != "metadata" and isinstance(v, dict))
    return {"instruction": entry["signature"]["instructions"], "demos": len(entry.get("demos", []))}


def run_compile(args: argparse.Namespace) -> dict[str, Any]:
    from dsr_core.optimizers import EvaluateWork, MIPROv2

    lm = dsr.LM("test", api_base=args.url, cache=not args.no_cache, max_concurrency=args.concurrency, num_retries=0)
    dsr.configure(lm=lm)
    trainset, valset = examples("train"), examples("val")
    make_dsr_program()(word="warmup")  # SDK import, client and first connection; not a benchmark word
    server_reset(args.url)

    optimizer = MIPROv2(metric, auto="light", seed=args.seed, parallel_trials=args.parallel_trials)
    states: list[Any] = []
    first_evaluation: list[float] = []  # when the first trial was asked for: the end of bootstrap + proposals
    tell, ask = optimizer.tell, optimizer.ask

    def recording_tell(state: Any, results: list[Any]) -> Any:  # keeps the last state, for the trial count
        new = tell(state, results)
        states.append(new)
        return new

    def recording_ask(state: Any) -> list[Any]:
        work = ask(state)
        if not first_evaluation and any(isinstance(item, EvaluateWork) for item in work):
            first_evaluation.append(time.perf_counter())
        return work

    optimizer.tell = recording_tell  # type: ignore[method-assign]
    optimizer.ask = recording_ask  # type: ignore[method-assign]
    started = time.perf_counter()
    compiled = optimizer.compile(make_dsr_program(), trainset, valset, concurrency=args.concurrency)
    seconds = time.perf_counter() - started
    proposing = first_evaluation[0] - started
    stats = server_stats(args.url)

    final = dsr.Evaluate(valset, metric, concurrency=args.concurrency, progress=False)(compiled)
    state = states[-1]
    trials = list(state.trials)
    return {
        "side": "dsr",
        "mode": "compile",
        "concurrency": args.concurrency,
        "parallel_trials": args.parallel_trials,
        "cache": not args.no_cache,
        "seconds": seconds,
        "phases": {"bootstrap + propose": proposing, "trials": seconds - proposing},
        "steps": len(states),
        "lm_calls": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "final_val_score": float(final.score),
        "best_score": state.best_score,
        "trials": len(trials),
        "minibatch_trials": sum(t.kind == "minibatch" for t in trials),
        "full_evals": sum(t.kind != "minibatch" for t in trials),
        **chosen(compiled.dump_state()),
    }


def run_flow(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="dsr-bench-mipro-flow-"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.chdir(work)
    write_jsonl(work / "train.jsonl", "train")
    write_jsonl(work / "dev.jsonl", "val")

    lm = dsr.LM("test", api_base=args.url, cache=False, num_retries=0)
    dsr.Predict("word -> code", lm=lm)(word="warmup")  # SDK import and first connection, as on the other sides

    startup = time_prefect_startup()

    from flows.config import validate_config
    from flows.optimize import run_optimization

    def config_for(name: str, train: Path, dev: Path, optimizer: dict[str, Any]) -> Any:
        return validate_config(
            {
                "program": {"ref": "bench.mipro_task:make_dsr_program"},
                "data": {"train": str(train), "dev": str(dev), "input_keys": ["word"]},
                "metric": {"ref": "bench.mipro_task:metric"},
                "lm": {
                    "model": "test",
                    "api_base": args.url,
                    "max_concurrency": args.concurrency,
                    "cache": not args.no_cache,
                    "num_retries": 0,
                },
                "optimizer": optimizer,
                "run": {
                    "name": name,
                    "artifacts_url": str(work / "artifacts"),
                    "checkpoint_url": str(work / "checkpoints"),
                    "concurrency": args.concurrency,
                    "max_workers": args.max_workers,
                    "shard_size": args.shard_size,
                },
                "mlflow": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}"},
            }
        )

    warm_seconds = None
    if not args.cold:
        # a small optimize run on other words (so it fills no cache entry the timed run could use): imports,
        # the MLflow store's tables and Prefect's task registrations, paid once per process / tracking store
        with open(work / "warm.jsonl", "w", encoding="utf-8") as handle:
            taken = {row["word"] for split in ("train", "val") for row in rows(split)}
            for word in [w for w in words(60, seed=DATA_SEED + 1) if w not in taken][:20]:
                handle.write(json.dumps({"word": word, "code": code_for(word)}) + "\n")
        warm = config_for("warm-up", work / "warm.jsonl", work / "warm.jsonl", {"name": "LabeledFewShot", "k": 2})
        t0 = time.perf_counter()
        run_optimization(warm)
        warm_seconds = time.perf_counter() - t0

    optimizer = {
        "name": "MIPROv2",
        "auto": "light",
        "seed": args.seed,
        **({"parallel_trials": args.parallel_trials} if args.parallel_trials != 1 else {}),
    }
    config = config_for("bench-mipro", work / "train.jsonl", work / "dev.jsonl", optimizer)
    server_reset(args.url)
    t0 = time.perf_counter()
    report = run_optimization(config)
    seconds = time.perf_counter() - t0
    stats = server_stats(args.url)
    program = json.loads(Path(report.program_url).read_text())
    shutil.rmtree(work, ignore_errors=True)
    return {
        "side": "dsr",
        "mode": "flow",
        "concurrency": args.concurrency,
        "max_workers": args.max_workers,
        "shard_size": args.shard_size,
        "cold": args.cold,
        "parallel_trials": args.parallel_trials,
        "cache": not args.no_cache,
        "seconds": seconds,
        "flow_wall_time": report.wall_time,
        "prefect_startup": startup,
        "warm_up_run": warm_seconds,
        "steps": report.steps,
        "lm_calls": stats["requests"],
        "flow_lm_calls": report.lm_calls,
        "flow_cached_calls": report.cached_calls,
        "max_in_flight": stats["max_in_flight"],
        "final_val_score": report.optimized_score,
        "baseline_score": report.baseline_score,
        "best_score": report.best_score,
        "trials": report.trials,
        **chosen(program.get("program", program)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("compile", "flow"))
    parser.add_argument("--url", required=True, help="base URL of the test server (.../v1)")
    parser.add_argument("--concurrency", type=int, default=128, help="LM max_concurrency and evaluation concurrency")
    parser.add_argument("--parallel-trials", type=int, default=1, help="MIPROv2 parallel_trials (DSPy: always 1)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-cache", action="store_true", help="LM cache off")
    parser.add_argument("--max-workers", type=int, default=4, help="flow: thread task runner workers")
    parser.add_argument("--shard-size", type=int, default=None, help="flow: examples per task (default: automatic)")
    parser.add_argument("--cold", action="store_true", help="flow: no warm-up optimize run before the timed one")
    args = parser.parse_args()
    result = run_compile(args) if args.mode == "compile" else run_flow(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
