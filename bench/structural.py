"""Structural optimization on the test server: a Fuse that saves a call at no loss, a Split that fixes an
overloaded signature. Prints a markdown table (score, LM calls per example, latency per example, edits).

    python bench/structural.py [--latency 0.1] [--examples 40]

The test server's rule-based responder models a capable model for the pipeline's fields: it writes a query
(the question upper-cased), keywords (the query's words joined by commas) and an answer (question:keywords),
but loses the last field when one call is asked for more than two, and confuses the answer when one call must
produce the keywords and the answer built from them. Everything runs in this process on dsr_core alone
(``StructuralOptimizer.compile``); the optimize flow runs the same machine as tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dsr_core as dsr  # noqa: E402
from dsr_core.optimizers import StructuralOptimizer  # noqa: E402
from dsr_core.testing.server import LMTestServer  # noqa: E402

SPLIT = (["1. question -> keywords", "2. question, keywords -> answer"], ["List the keywords.", "Answer."])


def keywords(values: dict[str, Any]) -> str:
    return (values.get("query") or values["question"].upper()).replace(" ", ",")


RULES = {
    "query": lambda v: v["question"].upper(),
    "keywords": keywords,
    "answer": lambda v: f"{v['question']}:{v.get('keywords') or keywords(v)}",
    "reasoning": lambda v: "thinking it through",
}


def responder(*, max_outputs: int, hard: bool) -> Any:
    def respond(request: Any) -> Any:
        if "sub_signatures" in request.output_fields:
            return request.reply(sub_signatures=SPLIT[0], sub_instructions=SPLIT[1])
        values = dict(request.inputs)
        produced = {}
        for name in request.output_fields:
            produced[name] = values[name] = RULES[name](values)
        asked = [name for name in request.output_fields if name != "reasoning"]
        if len(asked) > max_outputs:
            produced[asked[-1]] = "lost track"
        if hard and {"keywords", "answer"} <= set(asked):
            produced["answer"] = "confused"
        return request.reply(**produced)

    return respond


class ThreeSteps(dsr.Module):
    """rewrite -> expand -> answer."""

    def __init__(self) -> None:
        self.rewrite = dsr.Predict("question -> query")
        self.expand = dsr.Predict("query -> keywords")
        self.answer = dsr.Predict("question, keywords -> answer")

    async def aforward(self, question: str) -> dsr.Prediction:
        query = (await self.rewrite.acall(question=question)).query
        keys = (await self.expand.acall(query=query)).keywords
        return dsr.Prediction(answer=(await self.answer.acall(question=question, keywords=keys)).answer)


class Overloaded(dsr.Module):
    """One call for the keywords and the answer built from them."""

    def __init__(self) -> None:
        self.solve = dsr.Predict("question -> keywords, answer")

    async def aforward(self, question: str) -> dsr.Prediction:
        return await self.solve.acall(question=question)


def examples(n: int, offset: int = 0) -> list[dsr.Example]:
    questions = [f"what is item {offset + i}" for i in range(n)]
    return [
        dsr.Example(question=q, answer=f"{q}:{q.upper().replace(' ', ',')}").with_inputs("question") for q in questions
    ]


def exact(example: dsr.Example, prediction: dsr.Prediction, trace: Any = None) -> bool:
    return prediction.answer == example.answer


def measure(server: LMTestServer, program: dsr.Module, devset: list[dsr.Example]) -> dict[str, float]:
    """Score, LM calls per example and seconds per example (one example at a time)."""
    server.reset_stats()
    started = time.perf_counter()
    score = dsr.Evaluate(devset, exact, concurrency=1, progress=False)(program).score
    seconds = time.perf_counter() - started
    return {"score": score, "calls": server.stats.requests / len(devset), "seconds": seconds / len(devset)}


def case(name: str, student: dsr.Module, server: LMTestServer, n: int, prompt: dsr.LM | None) -> dict[str, Any]:
    train, dev = examples(8), examples(n, offset=100)
    before = measure(server, student, dev)
    started = time.perf_counter()
    compiled = StructuralOptimizer(metric=exact, prompt_model=prompt, minibatch_size=8, seed=0).compile(
        student, train, dev
    )
    optimize_seconds = time.perf_counter() - started
    after = measure(server, compiled, dev)
    nodes = [node.signature.text for node in compiled.graph.predict_nodes()]
    return {"case": name, "before": before, "after": after, "nodes": nodes, "optimize_seconds": optimize_seconds}


async def _warm(lm: dsr.LM) -> None:
    await lm.acall("warm up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--examples", type=int, default=40)
    args = parser.parse_args()
    results = []
    with LMTestServer(latency=args.latency) as server:
        lm = dsr.LM("task-model", api_base=server.url, cache=False, max_concurrency=64)
        prompt = dsr.LM("prompt-model", api_base=server.url, cache=False)
        dsr.configure(lm=lm)
        asyncio.run(_warm(lm))
        server.responder = responder(max_outputs=2, hard=False)
        results.append(case("fuse: rewrite -> expand -> answer", ThreeSteps(), server, args.examples, None))
        server.responder = responder(max_outputs=3, hard=True)
        results.append(case("split: question -> keywords, answer", Overloaded(), server, args.examples, prompt))
    print(f"test server, {args.latency * 1000:.0f} ms latency, {args.examples} validation examples\n")
    print("| case | score before -> after | LM calls / example | s / example | result | optimize s |")
    print("|---|---|---|---|---|---:|")
    for r in results:
        b, a = r["before"], r["after"]
        print(
            f"| {r['case']} | {b['score']:.1f} -> {a['score']:.1f} | {b['calls']:g} -> {a['calls']:g} "
            f"| {b['seconds']:.3f} -> {a['seconds']:.3f} | {'; '.join(r['nodes'])} | {r['optimize_seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
