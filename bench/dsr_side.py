"""The dsr side of the benchmarks (run with the dsr interpreter), plus the raw-HTTP floor.

    python bench/dsr_side.py {percall,evaluate,cached,floor} --url http://127.0.0.1:PORT/v1 [--n N] ...

Prints one JSON line. The benchmarks themselves live in ``common.py``; this file only binds them to dsr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SIGNATURE, questions, side_main, time_sequential  # noqa: E402

import dsr_core as dsr  # noqa: E402


class DsrHarness:
    """``dsr.Predict`` on a ``dsr.LM`` whose in-flight limit equals the Evaluate concurrency."""

    def __init__(self, url: str, cache: bool, threads: int) -> None:
        self.threads = threads
        self.lm = dsr.LM("test", api_base=url, cache=cache, max_concurrency=threads, num_retries=0)
        self.program = dsr.Predict(SIGNATURE, lm=self.lm)

    def ask(self, question: str) -> str:
        return self.program(question=question).answer

    def evaluator(self, pairs: list[tuple[str, str]]) -> Callable[[], dict[str, Any]]:
        devset = [dsr.Example(question=q, answer=a).with_inputs("question") for q, a in pairs]
        evaluate = dsr.Evaluate(devset, dsr.exact_match, concurrency=self.threads, progress=False)

        def run() -> dict[str, Any]:
            result = evaluate(self.program)
            return {"score": result.score, "errors": result.errors, "cached_fraction": result.cached_fraction}

        return run


def floor(args: argparse.Namespace) -> dict[str, Any]:
    """The same requests as ``percall`` (same bodies, built and serialized up front) as raw httpx2 POSTs.

    What is left is the HTTP client plus the server: no framework can be faster than this against it.
    """
    import httpx2

    lm = dsr.LM("test", api_base=args.url, cache=False)
    signature = dsr.Predict(SIGNATURE).signature
    adapter = dsr.ChatAdapter()
    timed_q, warmup_q = questions(args.n, "percall"), questions(args.warmup, "percall-warmup")
    bodies = {q: json.dumps(lm.build_request(adapter.format(signature, [], {"question": q}))).encode()
              for q in [*timed_q, *warmup_q]}
    url = f"{args.url}/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer not-needed"}
    with httpx2.Client() as client:

        def post(question: str) -> str:
            response = client.post(url, content=bodies[question], headers=headers)
            response.raise_for_status()
            return response.text

        reply = json.loads(post(warmup_q[0]))["choices"][0]["message"]["content"]
        if adapter.parse(signature, reply)["answer"] != warmup_q[0]:  # the same round trip percall checks
            raise RuntimeError(f"unexpected reply from the server: {reply!r}")
        seconds = time_sequential(post, timed_q, warmup_q)
    return {"n": args.n, "warmup": args.warmup, "seconds": seconds, "ms_per_call": 1000 * seconds / args.n}


if __name__ == "__main__":
    side_main(DsrHarness, "dsr side of the dsr-vs-DSPy benchmarks", extra={"floor": floor})
