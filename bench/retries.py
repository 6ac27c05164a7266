"""What a retry loop costs per call: dsr's own against tenacity's and the openai SDK's, on the same calls.

The call is one ``LM._attempt`` (the request under the LM's in-flight limit, and the reply parsed), answered
from memory instead of the network, so what differs between the rows is the loop around it:

- ``bare``: ``await lm._attempt(...)`` for each attempt, no retry loop (the floor);
- ``dsr``: ``LM._request_with_retries``, dsr's loop (``dsr_core/lm/retry.py``'s policy);
- ``tenacity async for``, ``tenacity AsyncRetrying(fn)`` and ``tenacity @retry``: tenacity 9 with the same
  policy (the attempts, ``is_transient``, dsr's ``backoff_delay`` as the wait), in its three usual forms;
- ``SDK create, max_retries=0`` and ``=5``: ``AsyncOpenAI.chat.completions.create`` over an in-memory
  transport. It is the SDK's whole request path, not ``_attempt``: the difference between its two rows is
  what its retry loop costs.

Two cases: every call succeeds at once (what nearly every call does), and every call fails once with a 500
then succeeds, with no backoff (what one retry costs besides its wait; the SDK's first wait is at least 0.375 s,
so it has no row there). Rows take turns within each repeat, each repeat starting once the machine is quiet (as
``bench/run.py`` waits); the SDK's rows make a tenth of the calls (each is a hundred times longer). The table
gives the median over the repeats, in µs per call, the range in brackets, and above the floor (the ``bare``
row of the same case; for the SDK's rows, the SDK without retries).

Usage: ``python bench/retries.py [--calls 20000] [--repeats 5] [--max-wait 300] [--json out.json]``. Needs
tenacity (``pip install tenacity``). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2  # noqa: E402
import openai  # noqa: E402
import tenacity  # noqa: E402
from run import Quiet  # noqa: E402

import dsr_core as dsr  # noqa: E402
from dsr_core.lm.retry import backoff_delay, is_transient, server_delay  # noqa: E402

URL = "http://127.0.0.1:9/v1"
RETRIES = 5
REPLY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }
).encode()
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "temperature": 0.0}


class MemoryClients:
    """What ``LM._attempt`` posts through (``LoopClients.chat``), answered from memory; ``fail_every=2`` makes
    every other request a 500, so each call fails once and then succeeds."""

    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self.requests = 0
        self.response = httpx2.Response(500, request=httpx2.Request("POST", URL))

    async def chat(self, body: dict[str, Any], timeout: float | None = None) -> bytes:
        self.requests += 1
        if self.fail_every and self.requests % self.fail_every:
            # a new one each time, as the transport raises them (one raised again would grow its traceback)
            raise openai.InternalServerError("Error code: 500", response=self.response, body=None)
        return REPLY


def tenacity_policy(lm: dsr.LM) -> dict[str, Any]:
    """dsr's policy written for tenacity: the same attempts, the same errors retried, the same wait."""
    return {
        "stop": tenacity.stop_after_attempt(lm.num_retries + 1),
        "retry": tenacity.retry_if_exception(is_transient),
        "wait": lambda state: backoff_delay(
            state.attempt_number - 1, lm.retry_backoff, server_delay(state.outcome.exception())
        ),
        "reraise": True,
    }


def variants(lm: dsr.LM, clients: MemoryClients) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each row's one call."""
    estimate = 20.0
    policy = tenacity_policy(lm)

    async def state() -> MemoryClients:
        return clients

    lm._state = state  # type: ignore[method-assign] # dsr's loop asks for the loop's clients first

    async def attempt() -> Any:
        return await lm._attempt(clients, BODY, estimate)  # type: ignore[arg-type]

    async def attempts() -> Any:
        """The floor: the call's attempts one after the other, with no loop deciding anything."""
        for _ in range(clients.fail_every - 1):
            try:
                await attempt()
            except openai.InternalServerError:
                pass
        return await attempt()

    async def tenacity_for() -> Any:
        async for trial in tenacity.AsyncRetrying(**policy):
            with trial:
                return await lm._attempt(clients, BODY, estimate)  # type: ignore[arg-type]
        return None

    async def tenacity_call() -> Any:
        return await tenacity.AsyncRetrying(**policy)(attempt)

    decorated = tenacity.retry(**policy)(attempt)
    return {
        FLOOR: attempts,
        "dsr `_request_with_retries`": lambda: lm._request_with_retries(BODY),
        "tenacity `async for attempt in AsyncRetrying(...)`": tenacity_for,
        "tenacity `await AsyncRetrying(...)(fn)`": tenacity_call,
        "tenacity `@retry(...)`": decorated,
    }


def sdk_row(retries: int) -> str:
    return f"SDK `chat.completions.create`, max_retries={retries}"


FLOOR = "bare `_attempt`s (no retry loop)"
SDK_FLOOR = sdk_row(0)


def sdk_variants() -> dict[str, Callable[[], Awaitable[Any]]]:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=REPLY, headers={"content-type": "application/json"})

    calls = {}
    for retries in (0, RETRIES):
        client = openai.AsyncOpenAI(
            api_key="not-needed",
            base_url=URL,
            max_retries=retries,
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(answer)),
        )
        create = client.chat.completions.create
        calls[sdk_row(retries)] = lambda create=create: create(**BODY)
    return calls


async def per_call_us(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - start) / calls * 1e6


async def measure(calls: int, repeats: int, quiet: Quiet) -> dict[str, dict[str, list[float]]]:
    cases: dict[str, dict[str, Callable[[], Awaitable[Any]]]] = {}
    for case, fail_every in (("succeeds at once", 0), ("one 500, then success (no wait)", 2)):
        lm = dsr.LM("m", api_base=URL, api_key="not-needed", num_retries=RETRIES, retry_backoff=(0.0, 0.0))
        cases[case] = variants(lm, MemoryClients(fail_every))
    cases["succeeds at once"].update(sdk_variants())
    timings: dict[str, dict[str, list[float]]] = {case: {name: [] for name in rows} for case, rows in cases.items()}
    for case, rows in cases.items():
        for call in rows.values():  # warm-up: first-use imports and caches out of the timed passes
            await per_call_us(call, min(calls, 500))
        for _ in range(repeats):
            quiet.wait()
            for name, call in rows.items():  # the rows take turns
                count = max(1, calls // 10) if name.startswith("SDK") else calls
                timings[case][name].append(await per_call_us(call, count))
    return timings


def table(timings: dict[str, dict[str, list[float]]]) -> str:
    """Each row's median and range, and what it costs above its floor: the bare call, or for the SDK's rows
    the SDK without retries."""
    lines = ["| case | loop | µs per call | above the floor (µs) |", "|---|---|---:|---:|"]
    for case, rows in timings.items():
        medians = {name: statistics.median(values) for name, values in rows.items()}
        for name, values in rows.items():
            floor_name = SDK_FLOOR if name.startswith("SDK") else FLOOR
            above = "–" if name == floor_name else f"{medians[name] - medians[floor_name]:+.1f}"
            spread = f"{medians[name]:.1f} ({min(values):.1f}–{max(values):.1f})"
            lines.append(f"| {case} | {name} | {spread} | {above} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per row and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-wait", type=float, default=300, help="wait up to this long for other load to go")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args()
    quiet = Quiet(args.max_wait)
    timings = asyncio.run(measure(args.calls, args.repeats, quiet))
    versions = ", ".join(f"{name} {version(name)}" for name in ("tenacity", "openai"))
    print(
        f"{versions}, Python {sys.version.split()[0]}; {args.calls} calls per row, {args.repeats} repeats; "
        f"the busiest start {100 * max(quiet.worst.values(), default=0.0):.0f}%\n"
    )
    print(table(timings))
    if args.json:
        args.json.write_text(json.dumps(timings, indent=2))


if __name__ == "__main__":
    main()
