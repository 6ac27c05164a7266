"""dsr vs DSPy, side by side: per-call overhead, Evaluate throughput, cached re-evaluation, import time.

    python bench/run.py [--quick] [--json results.json]

Run it with the dsr interpreter (the virtualenv dsr is installed in). DSPy runs under its own interpreter:
``$DSPY_PYTHON``, else ``bench/.venv-dspy/bin/python`` (``bash bench/setup_dspy.sh`` creates it).

Every measurement runs in a fresh process, one after another (never two clients at once), against the
test server (``dsr_core.testing.server``) in its own process. Each process gets fresh, empty cache
directories (``DSR_CACHE_DIR`` / ``DSPY_CACHEDIR``). Prints markdown tables to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DSR_PYTHON, REPO_ROOT, LMServer, dspy_python, dspy_version, run_side  # noqa: E402

DSR_CONCURRENCY = 256
DSPY_THREADS = (16, 64, 256)
EVAL_LATENCY = 0.1  # seconds per request at the server, benchmark b


@dataclass(frozen=True)
class Sizes:
    percall_n: int
    warmup: int
    eval_n: int
    import_runs: int
    repeats: int  # each a/b/c measurement this many times (fresh processes); tables show the median run


FULL = Sizes(percall_n=1000, warmup=50, eval_n=2000, import_runs=7, repeats=3)
QUICK = Sizes(percall_n=200, warmup=20, eval_n=500, import_runs=3, repeats=1)


def log(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def cpu_busy(interval: float = 1.0) -> float:
    """Fraction of all cores' time spent busy over ``interval`` seconds (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


class Quiet:
    """Before every measured process: wait (up to ``max_wait`` s) until other work leaves the CPUs idle.
    On 2 cores any other load lands on the cores the client and the server need. ``worst[benchmark]`` is
    the busiest machine a measurement of that benchmark started on."""

    def __init__(self, max_wait: float, threshold: float = 0.15) -> None:
        self.max_wait = max_wait
        self.threshold = threshold
        self.benchmark = ""  # the benchmark now running, set by main()
        self.worst: dict[str, float] = {}

    def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait
        busy = cpu_busy(0.5)
        while busy >= self.threshold and time.monotonic() < deadline:
            log(f"machine {100 * busy:.0f}% busy with other work; waiting for it to settle")
            time.sleep(5)
            busy = cpu_busy(0.5)
        if busy >= self.threshold:
            log(f"WARNING: starting on a machine {100 * busy:.0f}% busy with other work; numbers will suffer")
        self.worst[self.benchmark] = max(self.worst.get(self.benchmark, 0.0), busy)


QUIET = Quiet(max_wait=300)


@contextmanager
def cache_dirs() -> Iterator[dict[str, str]]:
    """Fresh, empty cache directories for both frameworks, removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="dsr-cache-") as dsr_dir,
        tempfile.TemporaryDirectory(prefix="dspy-cache-") as dspy_dir,
    ):
        yield {"DSR_CACHE_DIR": dsr_dir, "DSPY_CACHEDIR": dspy_dir}


def side(name: str, dspy_py: str) -> tuple[str, str]:
    return (DSR_PYTHON, "dsr_side.py") if name == "dsr" else (dspy_py, "dspy_side.py")


def run_one(name: str, dspy_py: str, benchmark: str, url: str, env: dict[str, str], **options: Any) -> dict[str, Any]:
    python, script = side(name, dspy_py)
    QUIET.wait()
    args = [benchmark, "--url", url, *[a for k, v in options.items() for a in (f"--{k}", str(v))]]
    log(f"{name}: {' '.join(args[:1] + args[3:])}")
    return run_side(python, script, args, env)


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (the lower one of an even count), plus every run's ``key`` value."""
    chosen = dict(sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2])
    chosen[f"{key}_all"] = [r[key] for r in runs]
    return chosen


# -- a. per-call overhead ------------------------------------------------------------------------------------------
def bench_percall(sizes: Sizes, dspy_py: str) -> dict[str, Any]:
    plan = [("floor", "dsr", "floor"), ("dsr", "dsr", "percall"), ("dspy", "dspy", "percall")]
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in plan}
    with LMServer(latency=0.0) as server:
        for _ in range(sizes.repeats):  # rounds, so drift on the machine spreads over every client alike
            for key, name, benchmark in plan:
                with cache_dirs() as env:
                    runs[key].append(
                        run_one(name, dspy_py, benchmark, server.url, env, n=sizes.percall_n, warmup=sizes.warmup)
                    )
    out: dict[str, Any] = {"n": sizes.percall_n, "warmup": sizes.warmup, "repeats": sizes.repeats}
    out.update({key: median_run(r, "ms_per_call") for key, r in runs.items()})
    out["ratio"] = out["dsr"]["ms_per_call"] / out["dspy"]["ms_per_call"]
    out["met"] = out["ratio"] <= 0.25
    return out


# -- b. Evaluate throughput ----------------------------------------------------------------------------------------
def bench_evaluate(sizes: Sizes, dspy_py: str) -> dict[str, Any]:
    n = sizes.eval_n
    plan = [
        ("floor-httpx2", "dsr", "floor-httpx2", DSR_CONCURRENCY),
        ("floor-aiohttp", "dsr", "floor-aiohttp", DSR_CONCURRENCY),
        ("dsr", "dsr", "evaluate", DSR_CONCURRENCY),
        *((f"dspy-{t}", "dspy", "evaluate", t) for t in DSPY_THREADS),
    ]
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in plan}
    with LMServer(latency=EVAL_LATENCY) as server:
        for _ in range(sizes.repeats):
            for key, name, benchmark, threads in plan:
                with cache_dirs() as env:
                    server.reset()
                    try:
                        result = run_one(name, dspy_py, benchmark, server.url, env, n=n, threads=threads)
                    except RuntimeError as exc:
                        if not key.startswith("floor"):
                            raise
                        log(f"skipping {key} (a reference row only): {str(exc).splitlines()[-1]}")
                        continue
                    stats = server.stats()
                runs[key].append(
                    {**result, "side": key, "max_in_flight": stats["max_in_flight"], "requests": stats["requests"]}
                )
    out: dict[str, Any] = {
        "n": n,
        "latency": EVAL_LATENCY,
        "repeats": sizes.repeats,
        "limit_s": EVAL_LATENCY * math.ceil(n / DSR_CONCURRENCY),
        "runs": [median_run(r, "seconds") for r in runs.values() if r],
    }
    dsr = next(r for r in out["runs"] if r["side"] == "dsr")
    best = min((r for r in out["runs"] if r["side"].startswith("dspy")), key=lambda r: r["seconds"])
    out["dsr_over_limit"] = dsr["seconds"] / out["limit_s"]
    out["dspy_best_over_dsr"] = best["seconds"] / dsr["seconds"]
    out["dspy_best_threads"] = best["threads"]
    out["met_limit"] = out["dsr_over_limit"] <= 1.5
    out["met_speedup"] = out["dspy_best_over_dsr"] >= 10
    return out


# -- c. fully cached re-evaluation ---------------------------------------------------------------------------------
def bench_cached(sizes: Sizes, dspy_py: str) -> dict[str, Any]:
    """Per configuration: process 1 fills the cache and times a second pass (memory tier); process 2, same
    cache directory, times one pass (disk tier only: its memory starts empty)."""
    n = sizes.eval_n
    plan = [("dsr", DSR_CONCURRENCY), *(("dspy", t) for t in DSPY_THREADS)]
    runs: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {c: {"memory": [], "disk": []} for c in plan}
    with LMServer(latency=0.0) as server:  # latency only slows the fill pass; timed passes make no requests
        for _ in range(sizes.repeats):
            for name, threads in plan:
                with cache_dirs() as env:
                    for phase in ("memory", "disk"):
                        runs[name, threads][phase].append(
                            run_one(name, dspy_py, "cached", server.url, env, n=n, threads=threads, phase=phase)
                        )
    out: dict[str, Any] = {
        "n": n,
        "repeats": sizes.repeats,
        "runs": [
            {"side": name, "threads": threads, **{phase: median_run(r, "examples_per_s") for phase, r in by.items()}}
            for (name, threads), by in runs.items()
        ],
    }
    dsr = next(r for r in out["runs"] if r["side"] == "dsr")
    out["met"] = dsr["memory"]["examples_per_s"] >= 10_000
    out["met_disk"] = dsr["disk"]["examples_per_s"] >= 10_000
    return out


# -- d. import time ------------------------------------------------------------------------------------------------
def import_seconds(python: str, module: str, runs: int) -> dict[str, Any]:
    """Wall time of ``python -c "import module"`` in a subprocess: one untimed run, then ``runs`` timed ones.

    Bytecode is written to and read from a private PYTHONPYCACHEPREFIX tree (filled by the untimed run), for
    both interpreters alike: an editable dsr checkout has no ``__pycache__`` of its own when the environment
    sets PYTHONDONTWRITEBYTECODE, while DSPy's site-packages were compiled by pip, and comparing source
    compilation with bytecode loading would measure that, not the packages. Runs from an empty directory."""
    times = []
    with tempfile.TemporaryDirectory() as cwd, tempfile.TemporaryDirectory(prefix="pycache-") as prefix:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = prefix
        for i in range(runs + 1):
            started = time.perf_counter()
            subprocess.run([python, "-c", f"import {module}"], check=True, cwd=cwd, env=env)
            if i:
                times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs}


def bench_import(sizes: Sizes, dspy_py: str) -> dict[str, Any]:
    QUIET.wait()
    log("import times")
    baseline = import_seconds(DSR_PYTHON, "sys", sizes.import_runs)  # interpreter start-up alone
    return {
        "dsr": import_seconds(DSR_PYTHON, "dsr_core", sizes.import_runs),
        "dspy": import_seconds(dspy_py, "dspy", sizes.import_runs),
        "python_startup": baseline,
    }


# -- report --------------------------------------------------------------------------------------------------------
def machine(dspy_py: str) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "dsr_core"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "dsr_commit": commit + (" (dsr_core/ has uncommitted changes)" if dirty else ""),
        "dspy": dspy_version(dspy_py),
        "dspy_python": dspy_py,
    }


def yes(flag: bool) -> str:
    return "**yes**" if flag else "**no**"


def spread(run: dict[str, Any], key: str, fmt: str) -> str:
    """The median value, with the range over all repeats when there were several."""
    text = format(run[key], fmt)
    values = run.get(f"{key}_all", [])
    return text + (f" ({format(min(values), fmt)}–{format(max(values), fmt)})" if len(values) > 1 else "")


def render(results: dict[str, Any]) -> str:
    """Markdown: a summary table, then one table per benchmark."""
    m, a, b, c, d = (results[k] for k in ("machine", "percall", "evaluate", "cached", "import"))
    dspy = f"DSPy {m['dspy']}"
    repeats = results["sizes"]["repeats"]
    dsr_b = next(r for r in b["runs"] if r["side"] == "dsr")
    best_b = min((r for r in b["runs"] if r["side"].startswith("dspy")), key=lambda r: r["seconds"])
    dsr_c = next(r for r in c["runs"] if r["side"] == "dsr")
    dspy_c = [r for r in c["runs"] if r["side"] == "dspy"]
    best_mem = max(r["memory"]["examples_per_s"] for r in dspy_c)
    best_disk = max(r["disk"]["examples_per_s"] for r in dspy_c)
    note = f"median of {repeats} runs in fresh processes, range in brackets" if repeats > 1 else "one run each"
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}; dsr {m['dsr_commit']}; {dspy}. "
        f"Numbers: {note}. Busiest the machine was (other work) when a measurement started: "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in results["busy_before"].items())
        + ".",
        "",
        "| benchmark | dsr | DSPy | target | met |",
        "|---|---:|---:|---|---|",
        f"| a. ms per sync call, 0 ms server (raw httpx2 floor {a['floor']['ms_per_call']:.3f}) | "
        f"{a['dsr']['ms_per_call']:.3f} | {a['dspy']['ms_per_call']:.3f} | dsr ≤ ¼ DSPy (is {a['ratio']:.2f}×) "
        f"| {yes(a['met'])} |",
        f"| b. Evaluate {b['n']} ex @ {1000 * b['latency']:.0f} ms, wall s (limit {b['limit_s']:.1f} s) | "
        f"{dsr_b['seconds']:.2f} | {best_b['seconds']:.2f} (best, {best_b['threads']} threads) | "
        f"dsr ≤ 1.5× limit (is {b['dsr_over_limit']:.2f}×) | {yes(b['met_limit'])} |",
        f"| | | | dsr ≥ 10× faster than DSPy's best (is {b['dspy_best_over_dsr']:.1f}×) | {yes(b['met_speedup'])} |",
        f"| c. cached re-evaluation, same process, ex/s | {dsr_c['memory']['examples_per_s']:,.0f} | "
        f"{best_mem:,.0f} (best) | dsr ≥ 10,000/s | {yes(c['met'])} |",
        f"| c. cached re-evaluation, new process (disk), ex/s | {dsr_c['disk']['examples_per_s']:,.0f} | "
        f"{best_disk:,.0f} (best) | (same bar, for reference) | {yes(c['met_disk'])} |",
        f"| d. `import` wall time, s (bare interpreter {d['python_startup']['median_s']:.3f}) | "
        f"{d['dsr']['median_s']:.3f} | {d['dspy']['median_s']:.3f} | – | – |",
        "",
        f"### a. Per-call overhead: {a['n']} sequential sync `Predict` calls ({a['warmup']} warm-up), "
        "0 ms server latency, cache off",
        "",
        "| client | ms/call | above the raw-HTTP floor (ms/call) |",
        "|---|---:|---:|",
        f"| raw httpx2.Client POSTs, same request bodies (floor) | {spread(a['floor'], 'ms_per_call', '.3f')} | – |",
        f"| dsr `Predict` | {spread(a['dsr'], 'ms_per_call', '.3f')} | "
        f"{a['dsr']['ms_per_call'] - a['floor']['ms_per_call']:.3f} |",
        f"| {dspy} `Predict` | {spread(a['dspy'], 'ms_per_call', '.3f')} | "
        f"{a['dspy']['ms_per_call'] - a['floor']['ms_per_call']:.3f} |",
        "",
        f"Target dsr ≤ ¼ of DSPy: dsr/DSPy = {a['ratio']:.2f} → {yes(a['met'])}.",
        "",
        f"### b. Evaluate throughput: {b['n']} examples, {1000 * b['latency']:.0f} ms server latency, cache off",
        "",
        "| run | concurrency | wall (s) | examples/s | score | server max_in_flight |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "floor-httpx2": "raw httpx2.AsyncClient POSTs, same bodies (dsr's transport, no framework)",
        "floor-aiohttp": "raw aiohttp POSTs, same bodies (another asyncio client, for scale)",
        "dsr": "dsr Evaluate (LM max_concurrency=256)",
    }
    for r in b["runs"]:
        label = labels.get(r["side"], f"{dspy} Evaluate num_threads={r['threads']}")
        score = f"{r['score']:.1f}" if "score" in r else "–"
        lines.append(
            f"| {label} | {r['threads']} | {spread(r, 'seconds', '.2f')} | {r['n'] / r['seconds']:.0f} | "
            f"{score} | {r['max_in_flight']} |"
        )
    lines += [
        "",
        f"Physical limit 0.1 s × ceil({b['n']}/256) = {b['limit_s']:.1f} s. "
        f"Target dsr ≤ 1.5× limit: {b['dsr_over_limit']:.2f}× → {yes(b['met_limit'])}. "
        f"Target dsr ≥ 10× faster than DSPy's best (num_threads={b['dspy_best_threads']}): "
        f"{b['dspy_best_over_dsr']:.1f}× → {yes(b['met_speedup'])}.",
        "",
        f"### c. Fully cached re-evaluation: {c['n']} examples, cache on",
        "",
        "| run | concurrency | fill pass (s) | 2nd pass, same process (ex/s) | new process, disk tier (ex/s) "
        "| server requests in timed passes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in c["runs"]:
        label = "dsr Evaluate" if r["side"] == "dsr" else f"{dspy} Evaluate num_threads={r['threads']}"
        requests = r["memory"]["requests_during_timed_pass"] + r["disk"]["requests_during_timed_pass"]
        lines.append(
            f"| {label} | {r['threads']} | {r['memory']['fill_seconds']:.2f} | "
            f"{spread(r['memory'], 'examples_per_s', ',.0f')} | {spread(r['disk'], 'examples_per_s', ',.0f')} "
            f"| {requests} |"
        )
    lines += [
        "",
        f"Target dsr ≥ 10,000 ex/s: second pass {dsr_c['memory']['examples_per_s']:,.0f}/s → {yes(c['met'])}; "
        f"new process (disk) {dsr_c['disk']['examples_per_s']:,.0f}/s → {yes(c['met_disk'])}.",
        "",
        f'### d. Import time: `python -c "import X"`, median of {d["dsr"]["runs"]} runs (after 1 untimed)',
        "",
        "| import | median (s) | min (s) | max (s) |",
        "|---|---:|---:|---:|",
    ]
    for label, key in (
        ("`import sys` (interpreter start-up only)", "python_startup"),
        ("`import dsr_core`", "dsr"),
        ("`import dspy`", "dspy"),
    ):
        lines.append(f"| {label} | {d[key]['median_s']:.3f} | {d[key]['min_s']:.3f} | {d[key]['max_s']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not for RESULTS.md)")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=300,
        help="before each measurement, wait up to this many seconds for other load to go away",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    dspy_py = dspy_python()
    QUIET.max_wait = args.max_wait
    results: dict[str, Any] = {"sizes": asdict(sizes), "machine": machine(dspy_py)}
    for name, bench in (
        ("percall", bench_percall),
        ("evaluate", bench_evaluate),
        ("cached", bench_cached),
        ("import", bench_import),
    ):
        QUIET.benchmark = name
        results[name] = bench(sizes, dspy_py)
    results["busy_before"] = QUIET.worst
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(render(results))


if __name__ == "__main__":
    main()
