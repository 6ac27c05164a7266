"""The reliability claims, measured: fault isolation, memory, and honest replay through the evaluate flow.

1. Faults: ``Evaluate`` in process (concurrency 64) over 500 examples against the test server, with faults
   injected for a seeded 16% of the examples (about 20% of the requests), of mixed kinds (500, 429 with a
   short Retry-After, timeout, garbage body, truncated body, disconnect, reset, unparseable reply). Half of
   the faulted examples get one fault (the LM's retry or the JSONAdapter fallback recovers), half get as many
   as there are attempts (the row fails). Every row must come back: each planned failure as a row with its
   error type, marked transient when the reason is infrastructure, and every other row scored.
2. Memory: peak RSS growth of an in-process ``Evaluate`` over 20,000 examples (zero server latency,
   concurrency 64, LM cache off), in a fresh process, with the server in a process of its own; then a second
   one after the first result is dropped, which should not raise the peak.
3. Replay (Prefect): ``flows.evaluate.run_evaluation`` on a small project written to a temp folder. The same
   evaluation again under another run name must be replayed (0 LM calls, 0 tokens, 0 server requests); after
   the metric file is edited nothing may be replayed, the score must change, and the LM cache must answer
   every call (0 server requests).

Everything runs in a temp folder (working directory, LM cache, Prefect home, MLflow on sqlite, artifacts)
that is deleted at the end. The script exits non-zero if any check in its tables fails.

    python bench/reliability.py [--faults 500] [--memory 20000] [--replay 200] [--only faults memory replay]
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import DSR_PYTHON, LMServer, run_side  # noqa: E402

SEED = 20240
CONCURRENCY = 64
FAULT_KINDS = ("500", "429", "timeout", "garbage", "truncated", "disconnect", "reset", "unparseable")
NUM_RETRIES = 1  # two attempts per request
LM_TIMEOUT = 1.0  # seconds: what a "timeout" fault costs per attempt
RETRY_AFTER = 0.05  # seconds, sent with every 429


def upper_devset(n: int, tag: str = "q") -> list[Any]:
    """``question = {tag}{i}``, gold ``answer`` its upper-case form: what the ``upper_answer`` responder says."""
    import dsr_core as dsr

    return [dsr.Example(question=f"{tag}{i}", answer=f"{tag}{i}".upper()).with_inputs("question") for i in range(n)]


def exact(example: Any, prediction: Any, trace: Any = None) -> bool:
    return prediction.answer == example.answer


# -- 1. fault isolation ------------------------------------------------------------------------------------------
def plan_faults(n: int, share: float = 0.16) -> dict[int, tuple[str, bool]]:
    """A seeded ``share`` of the example indices, each with (fault kind, persistent?); kinds are dealt in turn
    so each gets its share, and alternate examples of a kind are persistent.

    A faulted example costs two requests (the failed one and its retry or fallback), one fault each or, when
    persistent, two faults: 16% of the examples is 1.5 x 16 / 116 = 21% of the requests."""
    rng = random.Random(SEED)
    chosen = rng.sample(range(n), round(n * share))
    return {i: (FAULT_KINDS[j % len(FAULT_KINDS)], (j // len(FAULT_KINDS)) % 2 == 1) for j, i in enumerate(chosen)}


def run_faults(n: int) -> dict[str, Any]:
    import dsr_core as dsr
    from dsr_core.testing.server import LMTestServer
    from tests.programs import upper_answer

    plan = plan_faults(n)
    with LMTestServer(upper_answer, record_bodies=False) as server:
        for i, (kind, persistent) in plan.items():
            # a persistent fault outlasts every attempt: the LM's (num_retries + 1), or the chat reply and the
            # JSONAdapter fallback for an unparseable one
            times = NUM_RETRIES + 1 if persistent else 1
            question = f"q{i}"
            server.inject(
                kind,
                times,
                retry_after=RETRY_AFTER if kind == "429" else None,
                match=lambda request, question=question: request.inputs.get("question") == question,
            )
        lm = dsr.LM(
            "test-model",
            api_base=server.url,
            num_retries=NUM_RETRIES,
            retry_backoff=(0.01, 0.05),
            timeout=LM_TIMEOUT,
            max_concurrency=CONCURRENCY,
            cache=False,
        )
        program = dsr.Predict("question -> answer", lm=lm)
        started = time.perf_counter()
        # every row must come back: no stop at DSPy's default of 10 failures
        evaluate = dsr.Evaluate(upper_devset(n), exact, concurrency=CONCURRENCY, progress=False, max_errors=n + 1)
        result = evaluate(program)
        seconds = time.perf_counter() - started
        requests, faults_served = server.stats.requests, server.stats.faults_served
        server.clear_faults()  # the timeout faults' handlers are still asleep; stop() cancels them

    rows = result.rows
    failed = [r for r in rows if r.error_type is not None]
    by_type: Counter[tuple[str, str, bool]] = Counter(
        (plan[r.index][0] if r.index in plan else "none", r.error_type, r.transient) for r in failed
    )
    planned_failures = {i for i, (_, persistent) in plan.items() if persistent}
    failed_indices = {r.index for r in failed}
    return {
        "n": n,
        "seconds": seconds,
        "rows": len(rows),
        "distinct_indices": len({r.index for r in rows}),
        "scored": len(rows) - len(failed),
        "scored_correct": sum(1 for r in rows if r.error_type is None and r.score == 1.0),
        "failed": len(failed),
        "failed_by_type": [[kind, t, tr, c] for (kind, t, tr), c in sorted(by_type.items())],
        "transient": sum(1 for r in rows if r.transient),
        "planned_transient": sum(1 for i in planned_failures if plan[i][0] != "unparseable"),
        "faulted_examples": len(plan),
        "planned_failures": len(planned_failures),
        "unplanned_failures": len(failed_indices - planned_failures),
        "planned_but_scored": len(planned_failures - failed_indices),
        "requests": requests,
        "faults_served": faults_served,
        "kinds": dict(Counter(kind for kind, _ in plan.values())),
    }


# -- 2. memory ---------------------------------------------------------------------------------------------------
def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def memory_child(n: int) -> dict[str, Any]:
    """Two Evaluates over ``n`` examples in this (fresh) process: RSS before, at the peak of the first, and how
    much higher the second one (after the first result was dropped) takes the peak: 0 unless something
    accumulates across evaluations."""
    import resource

    import dsr_core as dsr

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    with LMServer(latency=0.0, responder="tests.programs:upper_answer") as server:
        lm = dsr.LM("test-model", api_base=server.url, max_concurrency=CONCURRENCY, cache=False, num_retries=1)
        program = dsr.Predict("question -> answer", lm=lm)
        devset = upper_devset(n)  # the input data is the caller's: built before the baseline
        evaluate = dsr.Evaluate(devset, exact, concurrency=CONCURRENCY, progress=False)
        # warm-up on other questions: SDK import, clients, connection pool
        dsr.Evaluate(upper_devset(1000, "w"), exact, concurrency=CONCURRENCY, progress=False)(program)
        gc.collect()
        baseline, peak_before = rss(), peak()
        started = time.perf_counter()
        result = evaluate(program)
        seconds = time.perf_counter() - started
        first_peak, held = peak(), rss()
        score, errors, rows = result.score, result.errors, result.n
        del result
        gc.collect()
        second = evaluate(program)
        second_peak = peak()
        assert second.n == n and second.errors == 0
    mb = 1024 * 1024
    return {
        "n": n,
        "rows": rows,
        "score": score,
        "errors": errors,
        "seconds": seconds,
        "examples_per_s": n / seconds,
        "baseline_mb": baseline / mb,
        "peak_before_mb": peak_before / mb,
        "peak_growth_mb": (max(first_peak, peak_before) - baseline) / mb,
        "held_mb": (held - baseline) / mb,
        "second_peak_growth_mb": (second_peak - first_peak) / mb,
    }


def run_memory(n: int) -> dict[str, Any]:
    return run_side(DSR_PYTHON, "reliability.py", ["--memory-child", str(n)], timeout=600)


# -- 3. replay honesty through the evaluate flow -----------------------------------------------------------------
PROGRAM = """
import dsr_core as dsr


class QA(dsr.Module):
    def __init__(self):
        self.answer = dsr.Predict("question -> answer")

    async def aforward(self, question):
        return await self.answer.acall(question=question)
"""
METRIC = "def exact(example, prediction, trace=None):\n    return prediction.answer == example.answer\n"
# the edit: a gold answer of "nope" (every 5th example) now counts as right whatever the program says
EDITED_METRIC = (
    "def exact(example, prediction, trace=None):\n"
    "    return prediction.answer == example.answer or example.answer == 'nope'\n"
)


def drop_project_modules() -> None:
    for module in [m for m in sys.modules if m == "proj" or m.startswith("proj.")]:
        del sys.modules[module]  # the next run imports the files as they are now, as a new command would


def run_replay(n: int, work: Path) -> dict[str, Any]:
    from dsr_core.testing.server import LMTestServer
    from tests.programs import upper_answer

    package = work / "proj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "program.py").write_text(PROGRAM)
    (package / "metric.py").write_text(METRIC)
    data = work / "dev.jsonl"
    with data.open("w") as handle:
        for i in range(n):  # every 5th gold answer is wrong on purpose: the first metric scores 80%
            handle.write(json.dumps({"question": f"q{i}", "answer": "nope" if i % 5 == 0 else f"Q{i}"}) + "\n")

    from flows.config import validate_config
    from flows.evaluate import run_evaluation

    out: dict[str, Any] = {"n": n}
    with LMTestServer(upper_answer, record_bodies=False) as server:

        def evaluate(name: str) -> dict[str, Any]:
            config = validate_config(
                {
                    "program": {"ref": "proj.program:QA"},
                    "data": {"dev": str(data), "input_keys": ["question"]},
                    "metric": {"ref": "proj.metric:exact"},
                    "lm": {"model": "test-model", "api_base": server.url, "max_concurrency": 64, "num_retries": 1},
                    "run": {"name": name, "artifacts_url": str(work / "artifacts")},
                    "mlflow": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "reliability"},
                }
            )
            before = server.stats.requests
            started = time.perf_counter()
            report = run_evaluation(config)
            return {
                "run": name,
                "seconds": time.perf_counter() - started,
                "score": report.score,
                "n": report.n,
                "errors": report.errors,
                "replayed": report.replayed,
                "lm_calls": report.lm_calls,
                "cached_fraction": report.cached_fraction,
                "tokens": report.prompt_tokens + report.completion_tokens,
                "server_requests": server.stats.requests - before,
                "shards": report.shards,
            }

        out["first"] = evaluate("first")
        out["again"] = evaluate("again")
        (package / "metric.py").write_text(EDITED_METRIC)
        drop_project_modules()
        out["edited_metric"] = evaluate("edited-metric")
    drop_project_modules()
    return out


# -- the report --------------------------------------------------------------------------------------------------
FAILED_CHECKS: list[bool] = []


def ok(condition: bool) -> str:
    """The table's ok column; a failed check also makes the script exit non-zero."""
    if not condition:
        FAILED_CHECKS.append(condition)
    return "yes" if condition else "**NO**"


def print_faults(f: dict[str, Any]) -> None:
    adds_up = f["scored"] + f["failed"] == f["rows"] and sum(c for *_, c in f["failed_by_type"]) == f["failed"]
    print(
        f"\n### 1. Fault isolation: Evaluate over {f['n']} examples, concurrency {CONCURRENCY}, "
        f"num_retries={NUM_RETRIES}, timeout {LM_TIMEOUT:g} s ({f['seconds']:.2f} s)\n"
    )
    print(
        f"{f['faulted_examples']} examples faulted (seeded; {', '.join(f'{k} x{c}' for k, c in f['kinds'].items())}),"
        f" {f['planned_failures']} of them persistently; {f['faults_served']} of {f['requests']} requests "
        f"({100 * f['faults_served'] / f['requests']:.0f}%) got a fault.\n"
    )
    print("| measure | result | expected | ok |\n|---|---:|---:|---|")
    print(f"| rows returned | {f['rows']} | {f['n']} | {ok(f['rows'] == f['n'] == f['distinct_indices'])} |")
    print(f"| rows scored | {f['scored']} | {f['n'] - f['planned_failures']} | {ok(f['planned_but_scored'] == 0)} |")
    print(f"| of which correct | {f['scored_correct']} | {f['scored']} | {ok(f['scored_correct'] == f['scored'])} |")
    print(f"| rows failed | {f['failed']} | {f['planned_failures']} | {ok(f['unplanned_failures'] == 0)} |")
    for kind, error_type, transient, count in f["failed_by_type"]:
        what = "transient" if transient else "not transient"
        print(f"| failed: {kind} fault -> {error_type} ({what}) | {count} | | |")
    print(
        f"| rows marked transient | {f['transient']} | {f['planned_transient']} "
        f"| {ok(f['transient'] == f['planned_transient'])} |"
    )
    print(
        f"| scored + failed = returned | {f['scored']} + {f['failed']} = {f['scored'] + f['failed']} | {f['rows']} "
        f"| {ok(adds_up)} |"
    )


def print_memory(m: dict[str, Any]) -> None:
    print(
        f"\n### 2. Memory: Evaluate over {m['n']:,} examples, 0 ms server (its own process), "
        f"concurrency {CONCURRENCY}, LM cache off\n"
    )
    print("| measure | result |\n|---|---:|")
    print(f"| rows / errors / score | {m['rows']:,} / {m['errors']} / {m['score']} ({ok(m['errors'] == 0)}) |")
    print(f"| wall time (s) | {m['seconds']:.2f} |")
    print(f"| examples/s | {m['examples_per_s']:,.0f} |")
    print(f"| RSS before (after a 1,000-example warm-up), MB | {m['baseline_mb']:.1f} |")
    print(f"| peak RSS growth (ru_maxrss - RSS before), MB | {m['peak_growth_mb']:.1f} |")
    print(f"| per example, KB | {1024 * m['peak_growth_mb'] / m['n']:.2f} |")
    print(f"| RSS growth with the result (its {m['rows']:,} rows) still held, MB | {m['held_mb']:.1f} |")
    print(
        f"| a second evaluation (first result dropped): peak above the first's, MB | {m['second_peak_growth_mb']:.1f} |"
    )


def print_replay(r: dict[str, Any]) -> None:
    first, again, edited = r["first"], r["again"], r["edited_metric"]
    print(f"\n### 3. Replay through the evaluate flow (Prefect, thread runner, {first['shards']} shards)\n")
    print(
        "| run | score | replayed | LM calls | cached fraction | tokens | server requests | wall (s) | expected | ok |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    checks = {
        "first": (
            f"{r['n']} requests, 0 replayed",
            first["server_requests"] == r["n"] and first["replayed"] == 0 and first["lm_calls"] == r["n"],
        ),
        "again": (
            f"{r['n']} replayed, 0 calls, 0 tokens, 0 requests, same score",
            again["replayed"] == r["n"]
            and again["lm_calls"] == 0
            and again["tokens"] == 0
            and again["server_requests"] == 0
            and again["score"] == first["score"],
        ),
        "edited-metric": (
            "0 replayed, new score, 0 requests (LM cache)",
            edited["replayed"] == 0
            and edited["score"] != first["score"]
            and edited["server_requests"] == 0
            and edited["cached_fraction"] == 1.0,
        ),
    }
    for row in (first, again, edited):
        expected, passed = checks[row["run"]]
        print(
            f"| {row['run']} | {row['score']} | {row['replayed']} | {row['lm_calls']} | {row['cached_fraction']:.2f} "
            f"| {row['tokens']:,} | {row['server_requests']} | {row['seconds']:.2f} | {expected} | {ok(passed)} |"
        )
    print(f"\nPrefect ephemeral server start (first flow of the process, outside the rows): {r['prefect_start']:.1f} s")


def machine() -> str:
    import platform
    import subprocess
    from importlib.metadata import version

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return (
        f"Machine: {os.cpu_count()} cores, `{model}`, Python {platform.python_version()}; dsr at "
        f"`{commit.stdout.strip() or '?'}`{' (uncommitted changes)' if dirty else ''}, openai {version('openai')}, "
        f"aiohttp {version('aiohttp')}, prefect {version('prefect')}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=500, help="examples in the fault run")
    parser.add_argument("--memory", type=int, default=20_000, help="examples in the memory run")
    parser.add_argument("--replay", type=int, default=200, help="examples in each evaluate-flow run")
    parser.add_argument("--only", nargs="+", choices=("faults", "memory", "replay"), default=None)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child)), flush=True)
        return

    parts = args.only or ["faults", "memory", "replay"]
    home = os.getcwd()
    work = Path(tempfile.mkdtemp(prefix="dsr-bench-reliability-"))
    # registered before Prefect is imported, so it runs after Prefect's own exit handler stops its server
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    os.environ["DSR_CACHE_DIR"] = str(work / "lm-cache")
    os.environ["PREFECT_HOME"] = str(work / "prefect-home")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.chdir(work)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        if "memory" in parts:  # first: a clean child process either way, but the machine is quietest now
            results["memory"] = run_memory(args.memory)
        if "faults" in parts:
            results["faults"] = run_faults(args.faults)
        if "replay" in parts:
            from bench.common import time_prefect_startup

            prefect_start = time_prefect_startup()
            results["replay"] = run_replay(args.replay, work)
            results["replay"]["prefect_start"] = prefect_start
    finally:
        os.chdir(home)
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started

    print(f"## Reliability: faults, memory, replay\n\n{machine()}")
    if "faults" in results:
        print_faults(results["faults"])
    if "memory" in results:
        print_memory(results["memory"])
    if "replay" in results:
        print_replay(results["replay"])
    print(f"\n{total:.0f} s in all")
    if FAILED_CHECKS:
        sys.exit(f"{len(FAILED_CHECKS)} check(s) failed")


if __name__ == "__main__":
    main()
