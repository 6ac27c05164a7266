"""Shared plumbing for the dsr-vs-DSPy benchmarks. Standard library only: both interpreters import it.

* ``LMServer``: the OpenAI-compatible test server (``dsr_core.testing.server``) as a subprocess on a free
  port, with its ``/v1/stats`` and ``/v1/reset`` endpoints.
* ``dspy_python`` / ``run_side``: run one benchmark of ``dsr_side.py`` or ``dspy_side.py`` in a fresh
  process and read back the JSON line it prints.
* The benchmarks themselves (``percall``, ``evaluate``, ``cached``), written once against ``Harness``:
  each side script only implements a ``Harness`` (the few lines that call its framework) and calls
  ``side_main``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_DSPY_PYTHON = BENCH_DIR / ".venv-dspy" / "bin" / "python"
DSR_PYTHON = sys.executable  # run.py runs in the dsr virtualenv; the dsr side and the server use it too

SIGNATURE = "question -> answer"


# -- the test server ---------------------------------------------------------------------------------------------
class LMServer:
    """``python -m dsr_core.testing.server`` in its own process (so it never shares a GIL with a client).

    ``--port 0`` lets the OS pick a free port; the server prints its base URL once it is listening.
    """

    def __init__(self, latency: float, python: str = DSR_PYTHON, responder: str | None = None) -> None:
        self.latency = latency
        self.python = python
        self.responder = responder  # ``package.module:function`` for the server's --responder
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: nobody has to drain it

    def start(self) -> LMServer:
        self._proc = subprocess.Popen(
            [
                *(self.python, "-m", "dsr_core.testing.server", "--port", "0", "--latency", str(self.latency)),
                *(("--responder", self.responder) if self.responder else ()),
            ],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=REPO_ROOT,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()  # blocks until the server is listening
        if not line.startswith("http://"):
            self.stop()
            self._stderr.seek(0)
            raise RuntimeError(f"test server did not start: {line!r} {self._stderr.read()[-4000:]}")
        self.url = line
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> LMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        return server_stats(self.url)

    def reset(self) -> None:
        server_reset(self.url)


def server_stats(url: str) -> dict[str, Any]:
    """The server's counters since its last reset: requests, completions, in_flight, max_in_flight, ..."""
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as response:
        return json.loads(response.read())


def server_reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/reset", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


# -- running one side in a fresh process -------------------------------------------------------------------------
def dspy_python() -> str:
    """The DSPy interpreter: ``$DSPY_PYTHON``, else ``bench/.venv-dspy/bin/python``. Exits if it is missing."""
    python = Path(os.environ.get("DSPY_PYTHON") or DEFAULT_DSPY_PYTHON)
    if not python.exists():
        sys.stderr.write(
            f"DSPy interpreter not found at {python}.\n"
            f"Create it with:  bash {BENCH_DIR.relative_to(REPO_ROOT)}/setup_dspy.sh\n"
            "or point DSPY_PYTHON at a Python that has dspy==3.4.1 installed.\n"
        )
        raise SystemExit(2)
    return str(python)


def dspy_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('dspy'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def run_side(
    python: str, script: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 1800
) -> dict[str, Any]:
    """Run ``bench/<script> <args>`` under ``python`` and return the JSON object of its last stdout line."""
    proc = subprocess.run(
        [python, str(BENCH_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{script} {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1])


# -- the workload, identical on both sides -----------------------------------------------------------------------
def questions(n: int, tag: str) -> list[str]:
    """``n`` distinct questions; ``tag`` keeps sets (warm-up, timed, per benchmark) from sharing any prompt."""
    return [f"[{tag}] What is the answer to question number {i}?" for i in range(n)]


def dataset(n: int, tag: str) -> list[tuple[str, str]]:
    """(question, gold answer) pairs. The echo server answers each question with itself, so a correct
    pipeline (prompt formatting, HTTP, reply parsing, metric) scores 100%: the score checks the run."""
    return [(q, q) for q in questions(n, tag)]


def time_sequential(call: Callable[[str], Any], timed: Iterable[str], warmup: Iterable[str]) -> float:
    """Seconds for ``call(q)`` over ``timed`` one after another, after ``call`` over ``warmup`` untimed."""
    for q in warmup:
        call(q)
    items = list(timed)
    started = time.perf_counter()
    for q in items:
        call(q)
    return time.perf_counter() - started


@contextmanager
def timed(out: dict[str, float], key: str = "seconds") -> Iterator[None]:
    """``with timed(result): ...`` stores the block's wall time (perf_counter) in ``result[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        out[key] = time.perf_counter() - started


# -- the benchmarks, written once against a small harness each side implements ------------------------------------
class Harness(Protocol):
    """What a side provides: one framework program (``question -> answer``) bound to one test server."""

    def ask(self, question: str) -> str:
        """One synchronous Predict call; returns the parsed ``answer`` field."""
        ...

    def evaluator(self, pairs: list[tuple[str, str]]) -> Callable[[], dict[str, Any]]:
        """Build the framework's devset and Evaluate (untimed); the returned callable runs one evaluation
        with exact match and returns at least ``{"score": percent}``."""
        ...


HarnessFactory = Callable[[str, bool, int], Harness]  # (server url, response cache on?, concurrency)
Handler = Callable[[argparse.Namespace], dict[str, Any]]


def check_echo(ask: Callable[[str], str], tag: str) -> None:
    """Fail loudly unless one call round-trips (so a broken setup cannot produce a fast, wrong number)."""
    probe = f"[{tag}] probe"
    answer = ask(probe)
    if answer != probe:
        raise RuntimeError(f"expected the echo {probe!r}, got {answer!r}")


def percall(factory: HarnessFactory, args: argparse.Namespace) -> dict[str, Any]:
    """Sequential synchronous calls, cache off, distinct questions: the framework's per-call cost + server."""
    harness = factory(args.url, False, args.threads)
    check_echo(harness.ask, "percall")
    seconds = time_sequential(harness.ask, questions(args.n, "percall"), questions(args.warmup, "percall-warmup"))
    return {"n": args.n, "warmup": args.warmup, "seconds": seconds, "ms_per_call": 1000 * seconds / args.n}


def evaluate(factory: HarnessFactory, args: argparse.Namespace) -> dict[str, Any]:
    """One timed Evaluate over ``n`` distinct examples, cache off, after a single warm-up call."""
    harness = factory(args.url, False, args.threads)
    check_echo(harness.ask, "evaluate")  # the warm-up: SDK import, client and first connection
    run = harness.evaluator(dataset(args.n, "evaluate"))
    out: dict[str, Any] = {"n": args.n, "threads": args.threads}
    with timed(out):
        out.update(run())
    return out


def cached(factory: HarnessFactory, args: argparse.Namespace) -> dict[str, Any]:
    """A fully cached Evaluate. Phase 'memory': fill the cache (first pass), then time a second pass in this
    process. Phase 'disk': a new process over a cache an earlier process filled, so every hit comes from disk.
    The server's request count over the timed pass must be 0 (every answer really came from the cache)."""
    harness = factory(args.url, True, args.threads)
    run = harness.evaluator(dataset(args.n, "cached"))
    out: dict[str, Any] = {"n": args.n, "threads": args.threads, "phase": args.phase}
    if args.phase == "memory":
        with timed(out, "fill_seconds"):
            run()
    server_reset(args.url)
    with timed(out):
        out.update(run())
    out["requests_during_timed_pass"] = server_stats(args.url)["requests"]
    out["examples_per_s"] = args.n / out["seconds"]
    return out


def side_main(factory: HarnessFactory, description: str, extra: dict[str, Handler] | None = None) -> None:
    """Parse ``<benchmark> --url ... [options]``, run it, print the result as one JSON line."""
    handlers: dict[str, Handler] = {
        "percall": partial(percall, factory),
        "evaluate": partial(evaluate, factory),
        "cached": partial(cached, factory),
        **(extra or {}),
    }
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("benchmark", choices=sorted(handlers))
    parser.add_argument("--url", required=True, help="base URL of the test server (.../v1)")
    parser.add_argument("--n", type=int, default=1000, help="timed calls / examples")
    parser.add_argument("--warmup", type=int, default=50, help="untimed warm-up calls (percall, floor)")
    parser.add_argument("--threads", type=int, default=64, help="Evaluate concurrency (dsr) / num_threads (DSPy)")
    parser.add_argument("--phase", choices=("memory", "disk"), default="memory", help="cached: see cached()")
    args = parser.parse_args()
    result = handlers[args.benchmark](args)
    print(json.dumps({"benchmark": args.benchmark, **result}), flush=True)


def time_prefect_startup() -> float:
    """Seconds an empty flow takes: Prefect's ephemeral server start (once per process), timed on its own."""
    import time

    from prefect import flow

    @flow
    def warm_up() -> int:
        return 1

    t0 = time.perf_counter()
    warm_up()
    return time.perf_counter() - t0


def median_run(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """The median run by wall time (the lower one of an even count), with every run's value of each of
    ``keys`` (``<key>_all``) and their median (``<key>_median``); a key a run lacks is left out of it."""
    import statistics

    chosen = dict(sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2])
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            chosen[f"{key}_all"] = values
            chosen[f"{key}_median"] = statistics.median(values)
    return chosen


def span(row: dict[str, Any], key: str, fmt: str) -> str:
    """The median of ``key`` over the runs, with their range in brackets when they differ."""
    import statistics

    values = row.get(f"{key}_all") or [row[key]]
    text = format(statistics.median(values), fmt)
    if len(values) > 1 and min(values) != max(values):
        text += f" ({format(min(values), fmt)}–{format(max(values), fmt)})"
    return text
