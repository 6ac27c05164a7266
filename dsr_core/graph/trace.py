"""Building a ProgramGraph by running a program on a few examples and watching where values go.

Each run records every Predict call (``dsr.trace()``) and every ``@step`` call. A value a node receives is
matched to what was available when it was called: the program's inputs and the outputs of earlier calls,
the very same object first, then an equal one. A value that matches nothing was made by Python code between
the calls and becomes an opaque step node. The runs must agree: every predictor called exactly once per run,
the same steps, and for every input field one source that explains it on every example. Anything else (a
branch, a loop, a field fed from different places) is reported with the nodes concerned, never drawn as if
it were a fixed graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._async import run_sync
from ..adapters.types import jsonable
from ..primitives import Example
from ..tracking import trace
from .ir import Binding, FieldSpec, GraphError, PredictNode, ProgramGraph, Ref, SignatureSpec, StepNode
from .steps import StepCall, record_steps
from .validate import validate_graph

if TYPE_CHECKING:
    from ..modules.module import Module
    from ..modules.predict import Predict

OUTPUT = ""  # the pseudo node name under which the program's outputs are matched


@dataclass(frozen=True)
class PlacementProblem:
    """Why a node could not be placed in a fixed graph."""

    node: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node or 'program output'}: {self.reason}"


class UnplaceableNodesError(GraphError):
    """The traced runs do not describe one fixed graph (data-dependent control flow, or ambiguous wiring)."""

    def __init__(self, problems: list[PlacementProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the program cannot be drawn as a fixed graph; nodes that could not be placed:\n{lines}")

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(p.node for p in self.problems))


@dataclass
class _Event:
    node: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    predictor: Predict | None = None
    function: str | None = None


@dataclass(frozen=True)
class _Candidate:
    ref: Ref
    identical: bool  # the very same object, not merely an equal one


@dataclass
class _Run:
    """What one example's run showed: the nodes in the order they were placed and where each value came from."""

    inputs: dict[str, Any]
    order: list[str] = field(default_factory=list)
    events: dict[str, _Event] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    candidates: dict[tuple[str, str], list[_Candidate]] = field(default_factory=dict)
    opaque: dict[str, tuple[str, list[Ref], Any]] = field(default_factory=dict)  # name -> (field, sources, value)
    outputs: dict[str, Any] = field(default_factory=dict)


def trace_program(program: Module, examples: Sequence[Example | Mapping[str, Any]]) -> ProgramGraph:
    """The graph of ``program``, traced on ``examples`` (their inputs); see ``atrace_program``."""
    return run_sync(atrace_program(program, examples))


async def atrace_program(program: Module, examples: Sequence[Example | Mapping[str, Any]]) -> ProgramGraph:
    """Run ``program`` on each example and build its graph; ``UnplaceableNodesError`` when the runs disagree.

    Several varied examples make the wiring certain: an equal value can come from two places on one
    example, rarely on all of them.
    """
    if not examples:
        raise GraphError("tracing needs at least one example")
    names = {id(p): n for n, p in program.named_predictors()}
    runs = [await _observe(program, _inputs(example), names) for example in examples]
    problems = _count_problems(runs, [n for n, _ in program.named_predictors()])
    if problems:
        raise UnplaceableNodesError(problems)
    graph = _build(program, runs)
    validate_graph(graph)
    return graph


def _inputs(example: Example | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(example, Example) and example.input_keys is not None:
        return dict(example.inputs().items())
    return dict(example.items())


async def _observe(program: Module, inputs: dict[str, Any], names: dict[int, str]) -> _Run:
    with trace() as calls, record_steps() as steps:
        result = await program.acall(**inputs)
    run = _Run(inputs)
    pool = [(Ref(field=k), v) for k, v in inputs.items()]
    for event in _events(calls, steps, names):
        run.counts[event.node] += 1
        for name, value in event.inputs.items():
            run.candidates[(event.node, name)] = _match(run, pool, value, event.node, name)
        run.order.append(event.node)
        run.events[event.node] = event
        pool.extend((Ref(node=event.node, field=k), v) for k, v in event.outputs.items())
    outputs = dict(result.items()) if hasattr(result, "items") else {"output": result}
    for name, value in outputs.items():
        run.candidates[(OUTPUT, name)] = _match(run, pool, value, "output", name)
    run.outputs = outputs
    return run


def _events(calls: list[tuple[Any, dict[str, Any], Any]], steps: list[StepCall], names: dict[int, str]) -> list[_Event]:
    """Predict calls and step calls in one list, in the order they completed."""
    events: list[_Event] = []
    pending = list(steps)
    for position, (predictor, inputs, prediction) in enumerate(calls):
        while pending and pending[0].position <= position:
            events.append(_step_event(pending.pop(0)))
        name = names.get(id(predictor), f"<unnamed {predictor!r}>")
        outputs = {k: prediction[k] for k in predictor.signature.output_fields if k in prediction}
        events.append(_Event(name, dict(inputs), outputs, predictor=predictor))
    events.extend(_step_event(s) for s in pending)
    return events


def _step_event(call: StepCall) -> _Event:
    return _Event(
        call.function.rpartition(":")[2].rpartition(".")[2], call.inputs, call.outputs, function=call.function
    )


def _match(run: _Run, pool: list[tuple[Ref, Any]], value: Any, consumer: str, field_name: str) -> list[_Candidate]:
    """Where ``value`` can have come from, most recent first, the same object before equal ones. A value from
    nowhere is made by Python code: an opaque step is placed for it (and can feed later nodes too)."""
    same = [_Candidate(ref, True) for ref, v in reversed(pool) if v is value]
    equal = [_Candidate(ref, False) for ref, v in reversed(pool) if v is not value and _equal(v, value)]
    if same or equal:
        return same + equal
    name = f"python:{consumer}.{field_name}"
    sources = [ref for ref, v in pool if _contains(value, v)]
    run.opaque[name] = (field_name, sources, value)
    run.counts[name] += 1
    run.order.append(name)
    ref = Ref(node=name, field=field_name)
    pool.append((ref, value))
    return [_Candidate(ref, True)]


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that refuse comparison are simply not equal
        return False


def _contains(container: Any, value: Any) -> bool:
    """Whether ``value`` shows inside ``container`` (an item, or a substring): a likely input of the code."""
    if isinstance(container, str):
        return isinstance(value, str) and bool(value) and value in container
    if isinstance(container, (list, tuple)):
        return any(_equal(item, value) or _contains(item, value) for item in container)
    if isinstance(container, Mapping):
        return any(_equal(item, value) or _contains(item, value) for item in container.values())
    return False


def _count_problems(runs: list[_Run], declared: list[str]) -> list[PlacementProblem]:
    """Nodes not seen exactly once in every run, and declared predictors never seen."""
    problems: list[PlacementProblem] = []
    seen = list(dict.fromkeys(name for run in runs for name in run.order))
    for name in seen:
        counts = [run.counts.get(name, 0) for run in runs]
        if name.startswith("<unnamed"):
            problems.append(PlacementProblem(name, "a Predict the program does not hold as a predictor"))
        elif 0 in counts:
            missing = [i for i, c in enumerate(counts) if c == 0]
            problems.append(
                PlacementProblem(
                    name, f"called on some examples but not on examples {missing} (a data-dependent branch)"
                )
            )
        elif len(set(counts)) > 1:
            problems.append(PlacementProblem(name, f"called a varying number of times per run: {counts} (a loop)"))
        elif counts[0] > 1:
            problems.append(PlacementProblem(name, f"called {counts[0]} times per run (a loop or a repeated call)"))
    for name in declared:
        if name not in seen:
            problems.append(PlacementProblem(name, "declared by the program but never called on the traced examples"))
    output_fields = {tuple(run.outputs) for run in runs}
    if len(output_fields) > 1:
        problems.append(PlacementProblem(OUTPUT, f"the program returns different fields: {sorted(output_fields)}"))
    return problems


def _choose(runs: list[_Run], key: tuple[str, str]) -> Ref | PlacementProblem:
    """The one source of a field that explains it on every run."""
    per_run = [run.candidates.get(key, []) for run in runs]
    common = [c.ref for c in per_run[0] if all(any(o.ref == c.ref for o in other) for other in per_run[1:])]
    node, field_name = key
    if not common:
        seen = "; ".join(f"example {i}: {[str(c.ref) for c in cands] or 'none'}" for i, cands in enumerate(per_run))
        return PlacementProblem(
            node, f"input {field_name!r} comes from different places on different examples ({seen})"
        )
    certain = [ref for ref in common if all(any(o.ref == ref and o.identical for o in cands) for cands in per_run)]
    if certain:
        return certain[0]
    if len(common) == 1:
        return common[0]
    return PlacementProblem(
        node,
        f"input {field_name!r} equals several sources on every example ({[str(r) for r in common]}); "
        "trace on more varied examples",
    )


def _build(program: Module, runs: list[_Run]) -> ProgramGraph:
    first = runs[0]
    problems: list[PlacementProblem] = []

    def bindings(node: str, fields: Sequence[str]) -> list[Binding]:
        chosen = []
        for name in fields:
            source = _choose(runs, (node, name))
            if isinstance(source, PlacementProblem):
                problems.append(source)
            else:
                chosen.append(Binding(field=name, source=source))
        return chosen

    nodes: list[PredictNode | StepNode] = []
    for name in first.order:
        if name in first.opaque:
            nodes.append(_opaque_node(name, runs))
            continue
        event = first.events[name]
        if event.predictor is not None:
            nodes.append(predict_node(name, event.predictor, bindings(name, list(event.inputs))))
        else:
            nodes.append(
                StepNode(
                    name=name,
                    inputs=[_value_field(k, [run.events[name].inputs[k] for run in runs]) for k in event.inputs],
                    outputs=[_value_field(k, [run.events[name].outputs.get(k) for run in runs]) for k in event.outputs],
                    bindings=bindings(name, list(event.inputs)),
                    function=event.function,
                )
            )
    returns = bindings(OUTPUT, list(first.outputs))
    if problems:
        raise UnplaceableNodesError(problems)
    types = {(n.name, f.name): f.type for n in nodes for f in n.output_fields}
    return ProgramGraph(
        inputs=[_value_field(k, [run.inputs.get(k) for run in runs]) for k in first.inputs],
        outputs=[_output_field(b, types, runs) for b in returns],
        returns=returns,
        nodes=nodes,
        program=f"{type(program).__module__}:{type(program).__qualname__}",
    )


def _output_field(binding: Binding, types: dict[tuple[str, str], str], runs: list[_Run]) -> FieldSpec:
    if binding.source.node is None:
        return _value_field(binding.field, [run.inputs.get(binding.source.field) for run in runs])
    return FieldSpec(name=binding.field, type=types[(binding.source.node, binding.source.field)])


def _opaque_node(name: str, runs: list[_Run]) -> StepNode:
    """A step seen only as a value: its inputs are the sources found inside that value on every run."""
    field_name, sources, _ = runs[0].opaque[name]
    common = [ref for ref in sources if all(ref in run.opaque[name][1] for run in runs[1:])]
    inputs, bindings = [], []
    for ref in common:
        local = ref.field if all(b.field != ref.field for b in bindings) else f"{ref.node}_{ref.field}"
        inputs.append(FieldSpec(name=local, type="Any"))
        bindings.append(Binding(field=local, source=ref))
    output = _value_field(field_name, [run.opaque[name][2] for run in runs])
    return StepNode(name=name, inputs=inputs, outputs=[output], bindings=bindings)


def predict_node(name: str, predictor: Predict, bindings: list[Binding]) -> PredictNode:
    """A Predict node holding ``predictor``'s current signature, demos, LM settings and config."""
    return PredictNode(
        name=name,
        signature=SignatureSpec.from_signature(predictor.signature),
        demos=[jsonable(d.to_dict() if hasattr(d, "to_dict") else dict(d)) for d in predictor.demos],
        lm=predictor.lm.dump_state() if predictor.lm is not None else None,
        config={k: v for k, v in predictor.config.items() if isinstance(v, (str, int, float, bool, type(None)))},
        adapter=_adapter_ref(predictor.adapter),
        bindings=bindings,
    )


def _adapter_ref(adapter: Any) -> str | None:
    """``module:Class`` of a predictor's own adapter, rebuilt with no arguments when the graph runs."""
    if adapter is None:
        return None
    cls = type(adapter)
    return f"{cls.__module__}:{cls.__qualname__}"


def _value_field(name: str, values: list[Any]) -> FieldSpec:
    """A field typed by the values seen in it (``Any`` when the runs disagree or the type has no name)."""
    types = {_value_type(v) for v in values}
    return FieldSpec(name=name, type=types.pop() if len(types) == 1 else "Any")


_SIMPLE = (str, int, float, bool)


def _value_type(value: Any) -> str:
    if isinstance(value, _SIMPLE):
        return type(value).__name__
    if isinstance(value, list) and value:
        inner = {type(v) for v in value}
        if len(inner) == 1 and issubclass(next(iter(inner)), _SIMPLE):
            return f"list[{next(iter(inner)).__name__}]"
        return "list"
    if isinstance(value, (list, dict)):
        return type(value).__name__
    return "Any"
