"""The dsr side of the benchmarks (run with the dsr interpreter), plus the raw-HTTP floor.

    python bench/dsr_side.py {percall,evaluate,cached,floor,floor-httpx2,floor-aiohttp} --url URL [--n N] ...

Prints one JSON line. The benchmarks themselves live in ``common.py``; this file only binds them to dsr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SIGNATURE, questions, side_main, time_sequential, timed  # noqa: E402

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


def request_bodies(url: str, qs: list[str]) -> dict[str, bytes]:
    """The exact JSON bodies dsr sends for these questions, serialized up front (the floors time only HTTP)."""
    lm = dsr.LM("test", api_base=url, cache=False)
    signature = dsr.Predict(SIGNATURE).signature
    adapter = dsr.ChatAdapter()
    return {q: json.dumps(lm.build_request(adapter.format(signature, [], {"question": q}))).encode() for q in qs}


def check_reply(body: bytes, question: str) -> None:
    """The floors skip parsing in the timed loop; check once that the server answers these bodies correctly."""
    reply = json.loads(body)["choices"][0]["message"]["content"]
    if dsr.ChatAdapter().parse(dsr.Predict(SIGNATURE).signature, reply)["answer"] != question:
        raise RuntimeError(f"unexpected reply from the server: {reply!r}")


HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer not-needed"}


def floor(args: argparse.Namespace) -> dict[str, Any]:
    """``percall``'s requests (same bodies) as sequential raw POSTs on one ``httpx2.Client``.

    What is left is the HTTP client plus the server: no framework can be faster than this against it.
    """
    import httpx2

    timed_q, warmup_q = questions(args.n, "percall"), questions(args.warmup, "percall-warmup")
    bodies = request_bodies(args.url, [*timed_q, *warmup_q])
    url = f"{args.url}/chat/completions"
    with httpx2.Client() as client:

        def post(question: str) -> bytes:
            response = client.post(url, content=bodies[question], headers=HEADERS)
            response.raise_for_status()
            return response.content

        check_reply(post(warmup_q[0]), warmup_q[0])
        seconds = time_sequential(post, timed_q, warmup_q)
    return {"n": args.n, "warmup": args.warmup, "seconds": seconds, "ms_per_call": 1000 * seconds / args.n}


def floor_async(client_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate``'s requests (same bodies) as raw concurrent POSTs: ``--threads`` workers sharing one
    connection pool of that size, no framework. ``httpx2`` is dsr's own transport (under the openai SDK);
    ``aiohttp`` is a different asyncio HTTP client, for scale."""
    qs = questions(args.n, "evaluate")
    bodies = request_bodies(args.url, ["[floor] probe", *qs])
    url = f"{args.url}/chat/completions"

    async def run() -> dict[str, Any]:
        if client_name == "httpx2":
            import httpx2

            limits = httpx2.Limits(max_connections=args.threads, max_keepalive_connections=args.threads)
            client: Any = httpx2.AsyncClient(limits=limits, timeout=120)

            async def post(body: bytes) -> bytes:
                response = await client.post(url, content=body, headers=HEADERS)
                response.raise_for_status()
                return response.content
        else:
            import aiohttp

            client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.threads))

            async def post(body: bytes) -> bytes:
                async with client.post(url, data=body, headers=HEADERS) as response:
                    response.raise_for_status()
                    return await response.read()

        async with client:
            check_reply(await post(bodies["[floor] probe"]), "[floor] probe")  # the warm-up, as in evaluate
            pending = iter(qs)

            async def worker() -> None:
                for q in pending:
                    await post(bodies[q])

            out: dict[str, Any] = {"n": args.n, "threads": args.threads, "client": client_name}
            with timed(out):
                await asyncio.gather(*(worker() for _ in range(args.threads)))
            return out

    return asyncio.run(run())


if __name__ == "__main__":
    side_main(
        DsrHarness,
        "dsr side of the dsr-vs-DSPy benchmarks (and the raw-HTTP floors)",
        extra={
            "floor": floor,
            "floor-httpx2": partial(floor_async, "httpx2"),
            "floor-aiohttp": partial(floor_async, "aiohttp"),
        },
    )
