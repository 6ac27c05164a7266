"""GraphProgram: a Module that runs a ProgramGraph, so an edited graph runs without new Python.

Each Predict node is a real ``Predict`` held under the node's name (the attribute is the node name itself,
``answer.predict`` included), so ``named_predictors()`` gives the traced program's own names: optimizers tune
the graph program as they tune the original, and a state file of the original loads into it. Nodes run as
asyncio tasks, each as soon as the nodes it reads have finished, so independent nodes run at the same time.
Step nodes call their ``@step`` function (async ones awaited, sync ones in the forward pool); a graph with a
step that names no function cannot run and is refused when the program is built.

A saved GraphProgram is an ordinary program file whose ``metadata.graph`` holds the graph, so it can be
rebuilt from the file alone (``GraphProgram.from_program_state``, ``load_graph_program``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ProgramStateError
from ..modules.module import Module
from ..modules.predict import Predict
from ..primitives import Example, Prediction
from ..runtime import runtime
from ..signatures import Signature
from ..state import ProgramState, load_lm_state, read_program_source
from .ir import GraphError, PredictNode, ProgramGraph, SignatureSpec, StepNode
from .steps import as_outputs, resolve_step
from .trace import atrace_program, predict_node, trace_program
from .validate import validate_graph

GRAPH_KEY = "graph"  # the key of the graph in a saved program's metadata

_EMPTY = ProgramGraph(inputs=[], outputs=[], returns=[], nodes=[])


class GraphProgram(Module):
    """Runs ``graph`` (validated on construction). ``GraphProgram()`` is an empty program to load a file into."""

    graph: ProgramGraph

    def __init__(self, graph: ProgramGraph | None = None) -> None:
        super().__init__()
        self.graph = _EMPTY
        self._build(graph or _EMPTY)

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_program(cls, program: Module, examples: Sequence[Example | Mapping[str, Any]]) -> GraphProgram:
        """Trace ``program`` on ``examples`` and run the graph with the program's own LM clients."""
        return cls(trace_program(program, examples))._sharing_lms(program)

    @classmethod
    async def afrom_program(cls, program: Module, examples: Sequence[Example | Mapping[str, Any]]) -> GraphProgram:
        return cls(await atrace_program(program, examples))._sharing_lms(program)

    @classmethod
    def from_program_state(cls, state: Mapping[str, Any], *, allow_unsafe_lm_state: bool = False) -> GraphProgram:
        """The program a saved state describes (its ``metadata.graph``), with the state loaded."""
        if graph_in_state(state) is None:
            raise ProgramStateError(
                "the program state has no graph in its metadata: it was not saved by a GraphProgram"
            )
        program = cls()
        program.load_state(dict(state), allow_unsafe_lm_state=allow_unsafe_lm_state)
        return program

    def _sharing_lms(self, program: Module) -> GraphProgram:
        for name, predictor in program.named_predictors():
            if name in self.__dict__ and predictor.lm is not None:
                self.__dict__[name].lm = predictor.lm
        return self

    def _build(self, graph: ProgramGraph, *, allow_unsafe_lm_state: bool = False) -> None:
        validate_graph(graph)
        reserved = [n.name for n in graph.predict_nodes() if n.name in _reserved_names()]
        if reserved:
            raise GraphError(f"node names {reserved} clash with GraphProgram's own attributes; rename those nodes")
        opaque = [n.name for n in graph.nodes if isinstance(n, StepNode) and n.function is None]
        if opaque:
            raise GraphError(
                f"step nodes {opaque} name no function, so the graph cannot run on its own: mark the Python code "
                "that makes their values with @dsr_core.graph.step (a module-level function) and trace again"
            )
        for node in graph.nodes:
            if isinstance(node, StepNode) and node.function is not None:
                resolve_step(node.function)  # a step that cannot be found fails now, not in the middle of a run
        predictors = {n.name: _predictor(n, allow_unsafe_lm_state) for n in graph.predict_nodes()}
        for node in self.graph.predict_nodes():
            self.__dict__.pop(node.name, None)
        self.__dict__.update(predictors)
        self.graph = graph

    # -- the graph as it is now ------------------------------------------------------------------------------------
    def to_graph(self) -> ProgramGraph:
        """The graph with each Predict node's current instructions, fields, demos, LM and config (what
        optimizers changed since it was built)."""
        nodes = [
            predict_node(node.name, self.__dict__[node.name], node.bindings) if isinstance(node, PredictNode) else node
            for node in self.graph.nodes
        ]
        return self.graph.model_copy(update={"nodes": nodes})

    @property
    def signature(self) -> type[Signature]:
        """The program's boundary as a signature: the graph's inputs and outputs (what ``dsr serve`` accepts
        and returns for it, as for a Predict)."""
        graph = self.graph
        return SignatureSpec(inputs=graph.inputs, outputs=graph.outputs).to_signature()

    def map_named_predictors(self, func: Callable[[Predict], Any]) -> Module:
        """Replace every predictor with ``func(predictor)``; returns self (node names are attribute keys)."""
        for name, predictor in self.named_predictors():
            self.__dict__[name] = func(predictor)
        return self

    # -- running -------------------------------------------------------------------------------------------------
    async def aforward(self, **inputs: Any) -> Prediction:  # type: ignore[override]
        graph = self.graph
        expected = [f.name for f in graph.inputs]
        missing = [name for name in expected if name not in inputs]
        extra = sorted(inputs.keys() - set(expected))
        if missing or extra:
            raise GraphError(f"the graph takes inputs {expected}; missing {missing}, unexpected {extra}")
        values: dict[tuple[str | None, str], Any] = {(None, k): v for k, v in inputs.items()}
        tasks: dict[str, asyncio.Task[None]] = {}

        async def run(node: PredictNode | StepNode) -> None:
            await asyncio.gather(*(tasks[name] for name in node.sources()))
            kwargs = {b.field: values[(b.source.node, b.source.field)] for b in node.bindings}
            outputs = await (self._predict(node, kwargs) if isinstance(node, PredictNode) else _step(node, kwargs))
            values.update({(node.name, k): v for k, v in outputs.items()})

        for node in graph.nodes:
            tasks[node.name] = asyncio.ensure_future(run(node))
        try:
            await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()
        return Prediction({b.field: values[(b.source.node, b.source.field)] for b in graph.returns})

    async def _predict(self, node: PredictNode, kwargs: dict[str, Any]) -> dict[str, Any]:
        prediction = await self.__dict__[node.name].acall(**kwargs)
        return {name: prediction[name] for name in node.signature.output_names()}

    # -- state ---------------------------------------------------------------------------------------------------
    def state_metadata(self) -> dict[str, Any]:
        """What a saved state's ``metadata`` holds besides the usual keys: the graph, as it is now."""
        return {GRAPH_KEY: self.to_graph().model_dump(mode="json")}

    def prepare_state(self, state: Mapping[str, Any], *, allow_unsafe_lm_state: bool = False) -> None:
        """Before a state's predictor entries load: rebuild the nodes from the graph it carries, if its nodes
        or wiring differ from this program's (otherwise the predictors, and their LM clients, stay)."""
        graph = graph_in_state(state)
        if graph is None:
            return
        if _structure(graph) != _structure(self.graph):
            self._build(graph, allow_unsafe_lm_state=allow_unsafe_lm_state)
        else:
            self.graph = graph

    def __repr__(self) -> str:
        return f"GraphProgram({len(self.graph.nodes)} nodes, {self.graph.lm_calls_per_run} LM calls per run)"


def load_graph_program(source: str | Path, *, allow_unsafe_lm_state: bool = False) -> GraphProgram:
    """A GraphProgram from a file saved by one (a path, an fsspec URL or ``models:/name@alias``)."""
    return GraphProgram.from_program_state(read_program_source(source), allow_unsafe_lm_state=allow_unsafe_lm_state)


def graph_in_state(state: Mapping[str, Any]) -> ProgramGraph | None:
    """The graph a program state carries in its metadata, if any."""
    metadata = ProgramState.from_json(dict(state)).metadata or {}
    saved = metadata.get(GRAPH_KEY)
    if saved is None:
        return None
    try:
        return ProgramGraph.model_validate(saved)
    except ValueError as exc:
        raise ProgramStateError(f"metadata.{GRAPH_KEY} is not a valid program graph: {exc}") from None


def _predictor(node: PredictNode, allow_unsafe_lm_state: bool) -> Predict:
    lm = load_lm_state(node.lm, f"graph node {node.name!r}", allow_unsafe_lm_state) if node.lm else None
    adapter = None
    if node.adapter is not None:
        from ..imports import import_ref

        try:
            adapter = import_ref(node.adapter)()
        except Exception as exc:  # noqa: BLE001 - reported with the node and the reference
            raise GraphError(f"graph node {node.name!r}: cannot build adapter {node.adapter!r}: {exc}") from None
    signature = node.signature.to_signature()
    return Predict(signature, lm=lm, demos=[dict(d) for d in node.demos], adapter=adapter, **node.config)


async def _step(node: StepNode, kwargs: dict[str, Any]) -> dict[str, Any]:
    assert node.function is not None  # refused at build time
    function = resolve_step(node.function)
    if inspect.iscoroutinefunction(function):
        result = await function(**kwargs)
    else:
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(runtime().forward_pool(), functools.partial(ctx.run, function, **kwargs))
    names = [f.name for f in node.outputs]
    outputs = as_outputs(result, names[0] if len(names) == 1 else "")
    missing = [name for name in names if name not in outputs]
    if missing:
        raise GraphError(f"step {node.name!r} ({node.function}) returned {sorted(outputs)}, not outputs {missing}")
    return {name: outputs[name] for name in names}


def _structure(graph: ProgramGraph) -> Any:
    """What a GraphProgram's build depends on: the boundary, and each node's kind, fields, wiring and
    function (not its instructions, demos or LM settings, which loading a state sets on the predictors)."""
    return (
        graph.model_dump(include={"inputs", "outputs", "returns"}),
        [
            (
                n.kind,
                n.name,
                [(f.name, f.type) for f in (*n.input_fields, *n.output_fields)],
                n.model_dump()["bindings"],
            )
            + ((n.function,) if isinstance(n, StepNode) else ())
            for n in graph.nodes
        ],
    )


@functools.cache
def _reserved_names() -> frozenset[str]:
    return frozenset(dir(GraphProgram)) | {"graph", "callbacks", "history", "_compiled"}
