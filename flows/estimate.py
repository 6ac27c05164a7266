"""What an optimization will cost, before it runs: ``dsr optimize CONFIG --estimate``.

Two parts, both shown:

- the plan, from the optimizer itself: its ask/tell machine is driven to the end with stand-in outcomes
  (no LM call: evaluations get seeded 0/1 scores, every bootstrap succeeds, generations come back as
  placeholder text), counting per phase the program runs on examples and the prompt model's generations it
  asks for. Plans fixed in advance (random search, MIPROv2, COPRO, SIMBA) come out exactly; plans that
  depend on what is accepted (GEPA within its metric-call budget, Structural) are the plan under those
  stand-in scores;
- a measured sample: the program run for real on a handful of training examples (calls per run, tokens
  per call, seconds per run), and one real generation by the prompt model when the plan has any (tokens and
  seconds per generation); a structural optimizer's tracing runs for real too. Calls go around the LM
  cache, so the sample measures what calls cost, not what the cache holds.

Calls, tokens and cost are plan x sample; wall time is each step's work in waves of the configured
concurrency. Costs need prices on the LM sections (unknown otherwise, never guessed). The estimate is kept
next to the run's checkpoints, and the run's report then shows it beside what the run really spent.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dsr_core as dsr
from dsr_core._async import run_sync
from dsr_core.costs import Prices
from dsr_core.optimizers.base import (
    BootstrapOutcome,
    BootstrapWork,
    EvaluateOutcome,
    EvaluateWork,
    GenerateOutcome,
    GenerateWork,
    GraphWork,
    LocalRunner,
    TraceCall,
    TraceOutcome,
    TraceWork,
    rng_for,
)
from dsr_core.optimizers.proposals import PROPOSAL_SIGNATURES
from dsr_core.tracking import track_usage_by_role
from tasks.program import build_metric, get_lm, instantiate

from .artifacts import join, open_file
from .config import RunConfig
from .optimize import FINAL_EVALUATION, build_optimizer, run_name_for
from .preflight import preflight

MAX_STEPS = 100_000  # a plan longer than this is not a plan
ESTIMATE_FILE = "estimate.json"


@dataclass
class PhasePlan:
    """What one phase of the plan asks for."""

    steps: int = 0
    program_runs: int = 0  # the program run once on one example (evaluations, bootstraps, traces)
    generations: int = 0  # requests to the prompt model
    completions: int = 0  # completions those requests ask for (n per request)
    waves: float = 0.0  # program-run waves at the configured concurrency, summed over steps
    generation_waves: float = 0.0


@dataclass
class Sample:
    """Measured on real calls: per program run and per generation."""

    runs: int = 0
    calls_per_run: float = 0.0
    prompt_tokens_per_call: float = 0.0
    completion_tokens_per_call: float = 0.0
    seconds_per_run: float = 0.0
    failed_runs: int = 0  # sample runs that raised (an unparsable reply, a program error): their calls count
    generations: int = 0
    prompt_tokens_per_generation: float = 0.0
    completion_tokens_per_completion: float = 0.0
    seconds_per_generation: float = 0.0
    real_calls: int = 0  # every LM call the estimate itself made
    # the endpoints' measured throughput (prompt + completion tokens a second, the sample's tokens over its
    # wall time at the sample's concurrency): what prices a gpu_hour_price set without tokens_per_second
    tokens_per_second: float = 0.0
    generation_tokens_per_second: float = 0.0


@dataclass
class Estimate:
    run_name: str
    optimizer: str
    phases: dict[str, PhasePlan]
    sample: Sample
    concurrency: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: dict[str, Any] = field(default_factory=dict)
    # the LM sections priced at the throughput the sample measured (gpu_hour_price without tokens_per_second)
    measured_throughput: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run_name": self.run_name, "optimizer": self.optimizer, "rows": self.rows, "total": self.total,
                "sample": vars(self.sample), "concurrency": self.concurrency,
                "measured_throughput": self.measured_throughput}  # fmt: skip


# -- the plan ------------------------------------------------------------------------------------------------------


def stand_in_outcomes(work: list[Any], runner: LocalRunner, real: Callable[[Any], list[Any]], seed: int) -> list[Any]:
    """Outcomes for ``work`` without LM calls (GraphWork excepted: ``real`` traces it)."""
    outcomes: list[Any] = []
    for item in work:
        if isinstance(item, EvaluateWork):
            scores = [float(rng_for(seed, "estimate", item.candidate, i).random() < 0.5) for i in item.indices]
            outcomes.append(EvaluateOutcome(candidate=item.candidate, split=item.split, indices=item.indices,
                                            scores=scores))  # fmt: skip
        elif isinstance(item, BootstrapWork):
            names = [name for name, _ in runner.program(item.teacher).named_predictors()]  # the teacher's nodes
            for i in item.indices:
                demo = {"augmented": True, **runner.trainset[i].to_dict()}
                outcomes.append(BootstrapOutcome(index=i, success=True, demos=dict.fromkeys(names, demo)))
        elif isinstance(item, GenerateWork):
            fields = PROPOSAL_SIGNATURES[item.signature].output_fields
            placeholder = {name: f"(estimate {n})" for n, name in enumerate(fields)}
            outcomes.append(GenerateOutcome(key=item.key, completions=[dict(placeholder) for _ in range(item.n)]))
        elif isinstance(item, TraceWork):
            names = [name for name, _ in runner.student.named_predictors()]
            for i in item.indices:
                example = runner.trainset[i]
                inputs = example.inputs().to_dict()
                outcomes.append(
                    TraceOutcome(
                        candidate=item.candidate,
                        index=i,
                        score=float(rng_for(seed, "estimate", item.candidate, i).random() < 0.5),
                        gold=example.labels().to_dict(),
                        outputs={},
                        feedback="(estimate)",
                        calls={name: [TraceCall(inputs=inputs, outputs={})] for name in names},
                    )
                )
        elif isinstance(item, GraphWork):
            outcomes.extend(real(item))
        else:
            raise TypeError(f"the estimate does not know work of kind {getattr(item, 'kind', type(item).__name__)!r}")
    return outcomes


def plan(optimizer: Any, state: Any, runner: LocalRunner, concurrency: int, seed: int) -> dict[str, PhasePlan]:
    """Drive the optimizer to the end on stand-in outcomes; what it asks for, per phase."""
    phases: dict[str, PhasePlan] = {}

    def real(item: Any) -> list[Any]:
        return run_sync(runner.run([item]))

    for _ in range(MAX_STEPS):
        if state.done:
            return phases
        phase = phases.setdefault(state.current_phase, PhasePlan())
        work = optimizer.ask(state)
        runs = sum(len(getattr(item, "indices", ())) for item in work if not isinstance(item, GenerateWork))
        generations = [item for item in work if isinstance(item, GenerateWork)]
        phase.steps += 1
        phase.program_runs += runs
        phase.generations += len(generations)
        phase.completions += sum(item.n for item in generations)
        phase.waves += math.ceil(runs / concurrency)
        phase.generation_waves += math.ceil(len(generations) / concurrency)
        with dsr.context(max_errors=None):
            state = optimizer.tell(state, stand_in_outcomes(work, runner, real, seed))
    raise RuntimeError(f"{type(optimizer).__name__}: the plan did not end within {MAX_STEPS} steps")


# -- the sample ----------------------------------------------------------------------------------------------------


def measure(runner: LocalRunner, size: int, generation: GenerateWork | None, concurrency: int) -> Sample:
    """Run the program on the first ``size`` training examples (at most ``concurrency`` at once, as the run
    will: a run's seconds then include the waiting it will see), and ``generation`` once, for real and around
    the cache: calls, tokens and seconds per run and per generation."""
    import asyncio

    sample = Sample()
    examples = runner.trainset[:size]

    async def one(example: dsr.Example, slots: asyncio.Semaphore) -> float:
        async with slots:
            started = time.perf_counter()
            try:
                await runner.student.acall(**example.inputs().to_dict())
            except Exception:  # noqa: BLE001 - a run that fails still shows what its calls cost (counted below)
                sample.failed_runs += 1
            return time.perf_counter() - started

    async def runs() -> list[float]:
        slots = asyncio.Semaphore(concurrency)
        return list(await asyncio.gather(*(one(e, slots) for e in examples)))

    wall = time.perf_counter()
    with dsr.context(cache=False), track_usage_by_role() as roles:
        seconds = run_sync(runs()) if examples else []
    wall = time.perf_counter() - wall
    task = dsr.Usage()
    for role, usage in roles.items():
        if role != "prompt":
            task.add(usage)
    if examples and task.lm_calls:
        sample.runs = len(examples)
        sample.calls_per_run = task.lm_calls / len(examples)
        sample.prompt_tokens_per_call = task.prompt_tokens / task.lm_calls
        sample.completion_tokens_per_call = task.completion_tokens / task.lm_calls
        sample.seconds_per_run = sum(seconds) / len(seconds)
        sample.tokens_per_second = task.total_tokens / wall if wall > 0 else 0.0
    sample.real_calls += task.lm_calls
    if generation is not None:
        started = time.perf_counter()
        with dsr.context(cache=False), track_usage_by_role() as roles:
            outcome = run_sync(runner.generate(generation))
        spent = dsr.Usage()
        for usage in roles.values():
            spent.add(usage)
        if outcome.error is None and spent.lm_calls:
            sample.generations = 1
            sample.prompt_tokens_per_generation = spent.prompt_tokens
            sample.completion_tokens_per_completion = spent.completion_tokens / max(1, generation.n)
            sample.seconds_per_generation = time.perf_counter() - started
            sample.generation_tokens_per_second = spent.total_tokens / sample.seconds_per_generation
        sample.real_calls += spent.lm_calls
    return sample


# -- putting them together -------------------------------------------------------------------------------------------


def estimate(config: RunConfig, *, sample_size: int = 3) -> Estimate:
    """The estimate for ``config``'s optimization (see the module docstring)."""
    prepared = preflight(config, "optimize")
    trainset = prepared.trainset or []
    valset = prepared.devset
    student = instantiate(config.program.ref, prepared.program_state)
    lm = get_lm(config.lm)
    for predictor in student.predictors():
        predictor.lm = predictor.lm or lm
    optimizer = build_optimizer(config)
    prompt_spec = (config.reflection_lm if config.optimizer.name == "GEPA" else None) or config.prompt_lm
    runner = LocalRunner(
        student,
        trainset,
        valset,
        build_metric(config.metric, config.judge_lm),
        concurrency=config.run.concurrency,
        prompt_lm=get_lm(prompt_spec or config.lm, "prompt"),
    )
    concurrency = max(1, min(config.lm.max_concurrency, config.run.concurrency * (config.run.max_workers or 4)))
    first_generation: list[GenerateWork] = []
    recording = _Recording(optimizer, first_generation, "val" if valset else "train", len(valset or trainset))
    with dsr.context(cache=False):  # a GraphWork traces for real; its calls are part of the measured sample
        phases = plan(
            recording, optimizer.init_state(student, trainset, valset), runner, concurrency, config.optimizer.seed
        )
    phases[FINAL_EVALUATION] = final_evaluation(recording.full_evaluations, len(valset or trainset), config,
                                                 concurrency)  # fmt: skip
    generation = first_generation[0] if first_generation else None
    sample = measure(runner, min(sample_size, len(trainset)), generation, concurrency)
    result = Estimate(run_name_for(config, "estimate"), config.optimizer.name, phases, sample, concurrency)
    result.rows, result.total, result.measured_throughput = _rows(config, phases, sample)
    return result


def final_evaluation(full: int, examples: int, config: RunConfig, concurrency: int) -> PhasePlan:
    """The flow scores the baseline and the result on the evaluation split at the end. When the plan already
    scored programs on all of that split (the baseline among them, as every searching optimizer does) and
    persisted shard results may be replayed, those two evaluations come back from the trials' results."""
    from .shards import replays_allowed

    runs = 0 if full and replays_allowed(config) else 2 * examples
    return PhasePlan(steps=1, program_runs=runs, waves=math.ceil(runs / concurrency))


class _Recording:
    """The optimizer, remembering the first generation it asks for (the sample runs that one for real) and
    how many evaluations cover the whole evaluation split."""

    def __init__(self, optimizer: Any, into: list[GenerateWork], split: str, size: int) -> None:
        self._optimizer = optimizer
        self._into = into
        self._split, self._size = split, size
        self.full_evaluations = 0  # evaluations of a program on all of the evaluation split

    def ask(self, state: Any) -> list[Any]:
        work = self._optimizer.ask(state)
        if not self._into:
            first = next((item for item in work if isinstance(item, GenerateWork)), None)
            if first is not None:
                self._into.append(first)
        self.full_evaluations += sum(
            isinstance(item, EvaluateWork) and item.split == self._split and len(item.indices) == self._size
            for item in work
        )
        return work

    def tell(self, state: Any, outcomes: list[Any]) -> Any:
        return self._optimizer.tell(state, outcomes)


def _rows(
    config: RunConfig, phases: dict[str, PhasePlan], s: Sample
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, float]]:
    """The rows by phase, the total, and the sections priced at a measured throughput."""
    reflection = config.reflection_lm if config.optimizer.name == "GEPA" else None
    prompt_name = "reflection_lm" if reflection else "prompt_lm" if config.prompt_lm else "lm"
    measured: dict[str, float] = {}
    task_prices = _at_throughput(config.lm.prices(), "lm", s.tokens_per_second, measured)
    # the prompt model on the task's endpoint ([lm]) runs at the throughput the program runs measured
    prompt_rate = s.tokens_per_second if prompt_name == "lm" else s.generation_tokens_per_second
    prompt_prices = _at_throughput((reflection or config.prompt_lm or config.lm).prices(), prompt_name, prompt_rate,
                                   measured)  # fmt: skip
    rows = []
    total: dict[str, Any] = {"steps": 0, "program_runs": 0, "lm_calls": 0, "tokens": 0, "cost": 0.0, "seconds": 0.0}
    for name, p in phases.items():
        task_calls = p.program_runs * s.calls_per_run
        task_in, task_out = task_calls * s.prompt_tokens_per_call, task_calls * s.completion_tokens_per_call
        gen_in = p.generations * s.prompt_tokens_per_generation
        gen_out = p.completions * s.completion_tokens_per_completion
        cost = _cost(task_prices, task_in, task_out, task_calls)
        prompt_cost = _cost(prompt_prices, gen_in, gen_out, p.generations)
        row = {
            "phase": name,
            "steps": p.steps,
            "program_runs": p.program_runs,
            "lm_calls": round(task_calls + p.generations),
            "prompt_model_calls": p.generations,
            "tokens": round(task_in + task_out + gen_in + gen_out),
            "cost": None if cost is None or prompt_cost is None else round(cost + prompt_cost, 6),
            "seconds": round(p.waves * s.seconds_per_run + p.generation_waves * s.seconds_per_generation, 1),
        }
        rows.append(row)
        for key in ("steps", "program_runs", "lm_calls", "tokens", "seconds"):
            total[key] += row[key]
        total["cost"] = None if total["cost"] is None or row["cost"] is None else total["cost"] + row["cost"]
    if total["cost"] is not None:
        total["cost"] = round(total["cost"], 6)
    total["seconds"] = round(total["seconds"], 1)
    return rows, total, measured


def _at_throughput(prices: Prices | None, section: str, rate: float, measured: dict[str, float]) -> Prices | None:
    """``prices``, with the measured ``rate`` where a gpu_hour_price has no tokens_per_second (a set one
    wins); a section priced that way is noted in ``measured``."""
    if prices is None or not prices.needs_throughput or rate <= 0:
        return prices
    measured[section] = round(rate, 1)
    return prices.with_throughput(rate)


def _cost(prices: Prices | None, prompt_tokens: float, completion_tokens: float, calls: float) -> float | None:
    if not calls:
        return 0.0
    if prices is None or prices.needs_throughput:
        return None
    return prices.of(round(prompt_tokens), round(completion_tokens))


def save_estimate(config: RunConfig, result: Estimate) -> str | None:
    """Keep the estimate next to the run's checkpoints (the run's report then shows it beside the actuals);
    only a run with a ``run.name`` has a folder known before it starts."""
    if not config.run.name:
        return None
    url = join(config.run.checkpoint_url, config.run.name, ESTIMATE_FILE)
    with open_file(url, "w") as handle:
        json.dump(result.to_json(), handle, indent=2)
    return url


def read_estimate(checkpoint_url: str, run_name: str) -> dict[str, Any] | None:
    try:
        with open_file(join(checkpoint_url, run_name, ESTIMATE_FILE), "r") as handle:
            return json.load(handle)  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return None


def print_estimate(result: Estimate, saved: str | None) -> None:
    """The estimate as a table by phase, the measured sample under it (``dsr optimize --estimate``)."""
    import typer

    from .display import money, plain_table, print_table

    columns = ["phase", "steps", "program runs", "LM calls", "prompt-model calls", "tokens", "cost", "wall"]
    rows = [
        [r["phase"], r["steps"], r["program_runs"], r["lm_calls"], r["prompt_model_calls"], f"{r['tokens']:,}",
         _short_money(r["cost"]), f"{r['seconds']:.0f}s"]
        for r in result.rows
    ]  # fmt: skip
    total = result.total
    rows.append(["total", total["steps"], total["program_runs"], total["lm_calls"], "", f"{total['tokens']:,}",
                 _short_money(total["cost"]), f"{total['seconds']:.0f}s"])  # fmt: skip
    typer.echo(f"estimate for {result.optimizer} (at {result.concurrency} requests in flight):")
    print_table(plain_table(columns, rows, right=set(columns) - {"phase"}))
    s = result.sample
    typer.echo(
        f"measured on {s.runs} real program runs: {s.calls_per_run:g} LM calls each, "
        f"{s.prompt_tokens_per_call:.0f} tokens in / {s.completion_tokens_per_call:.0f} out per call, "
        f"{s.seconds_per_run:.2f}s per run"
        + (
            f"; {s.generations} real generation: {s.prompt_tokens_per_generation:.0f} tokens in, "
            f"{s.completion_tokens_per_completion:.0f} out per completion, {s.seconds_per_generation:.2f}s"
            if s.generations
            else ""
        )
        + f" ({s.real_calls} LM calls spent on the estimate)"
        + (f"; {s.failed_runs} of the sample runs failed" if s.failed_runs else "")
    )
    for section, rate in result.measured_throughput.items():
        typer.echo(f"cost: [{section}] gpu_hour_price at the measured {rate:g} tokens a second "
                   f"(set {section}.tokens_per_second to price at another)")  # fmt: skip
    if total["cost"] is None:
        typer.echo(f"cost: {money(None)}")
    typer.echo(f"kept at {saved}: the run's report shows it beside the actual numbers" if saved else
               "set run.name (or --name) to keep the estimate for comparison with the run")  # fmt: skip


def _short_money(cost: float | None) -> str:
    return "?" if cost is None else (f"${cost:,.4f}" if cost < 1 else f"${cost:,.2f}")
