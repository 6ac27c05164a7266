"""Structural edits: small serializable objects that turn one graph into another, deterministically.

``apply_edit(graph, edit)`` returns a new graph whose ``parent`` is the old graph's hash, validated against
the old one (same inputs and outputs, output types equal or wider). Consumers of a replaced node are rewired
to whichever new node now produces the field they read; field names are kept, so the rewiring is by name.

- ``Fuse(a, b)``: one LM call for two adjacent Predict nodes (b reads some output of a). The fused node
  takes a's inputs and b's other inputs and produces a's outputs then b's; b's inputs fed by a become
  internal. Instructions are concatenated; demos are merged where a demo of a and a demo of b come from
  the same example (b's demo saw exactly what a's demo produced); the fused node keeps a's LM settings.
- ``Split(node, parts)``: explicit sub-signatures run in order; each part reads the node's inputs or the
  outputs of earlier parts, and together the parts produce every output of the node. A part that produces
  one of the node's outputs keeps the node's instructions unless given its own; each part gets the node's
  demos restricted to its fields when the demos have them all.
- ``AddReasoning(node)``: a ``reasoning`` output before the others, as ChainOfThought adds it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import SignatureError
from ..signatures import parse_signature, type_name
from .ir import REASONING, Binding, FieldSpec, GraphError, PredictNode, ProgramGraph, Ref, SignatureSpec, dsr_types
from .validate import GraphValidationError, topological_order, validate_graph


class GraphEditError(GraphError):
    """An edit does not apply to a graph; the message says which node or field stops it."""


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fuse(_Edit):
    """Fuse Predict node ``b`` into the node ``a`` it reads from; the new node is ``name`` (default ``a+b``)."""

    kind: Literal["fuse"] = "fuse"
    a: str
    b: str
    name: str | None = None

    def transform(self, graph: ProgramGraph) -> ProgramGraph:
        a, b = _predict(graph, self.a, self), _predict(graph, self.b, self)
        links = [bind for bind in b.bindings if bind.source.node == a.name]
        if not links:
            raise GraphEditError(f"{self!r}: {b.name!r} reads no output of {a.name!r}; only adjacent nodes fuse")
        a_inputs = {bind.field: bind.source for bind in a.bindings}
        a_outputs = set(a.signature.output_names())
        inputs, bindings = list(a.signature.inputs), list(a.bindings)
        for spec in b.signature.inputs:
            source = b.binding_for(spec.name)
            assert source is not None  # the graph is valid
            if source.node == a.name:
                continue
            if spec.name in a_inputs:
                if a_inputs[spec.name] != source:
                    raise GraphEditError(
                        f"{self!r}: input {spec.name!r} reads {a_inputs[spec.name]} in {a.name!r} "
                        f"but {source} in {b.name!r}"
                    )
                continue
            if spec.name in a_outputs:
                raise GraphEditError(
                    f"{self!r}: {b.name!r} input {spec.name!r} reads {source}, not {a.name!r}'s output"
                )
            inputs.append(spec)
            bindings.append(Binding(field=spec.name, source=source))
        clash = sorted(a_outputs & set(b.signature.output_names()))
        if clash:
            raise GraphEditError(f"{self!r}: both nodes produce {clash}")
        renamed = [f"use `{bind.source.field}` as `{bind.field}`" for bind in links if bind.field != bind.source.field]
        second = b.signature.instructions + (f" ({'; '.join(renamed)})" if renamed else "")
        signature = SignatureSpec(
            instructions=f"{a.signature.instructions}\n\nThen, in the same response: {second}",
            inputs=inputs,
            outputs=[*a.signature.outputs, *b.signature.outputs],
        )
        fused = PredictNode(
            name=self.name or f"{a.name}+{b.name}",
            signature=signature,
            demos=_merge_demos(a, b, links, signature),
            lm=a.lm,
            config={**b.config, **a.config},
            adapter=a.adapter or b.adapter,
            bindings=bindings,
        )
        producers = {(a.name, f): fused.name for f in a_outputs} | {
            (b.name, f): fused.name for f in b.signature.output_names()
        }
        nodes = [fused if n.name == a.name else n for n in graph.nodes if n.name != b.name]
        return _rewired(graph, nodes, producers)


class SplitPart(_Edit):
    """One sub-step of a Split: an inline signature (``"question -> query"``; a field named like one of the
    node's keeps its type and description unless typed here), optional instructions and node name."""

    signature: str
    instructions: str = ""
    name: str | None = None


class Split(_Edit):
    """Replace Predict node ``node`` by ``parts``, run in order (see the module docstring)."""

    kind: Literal["split"] = "split"
    node: str
    parts: list[SplitPart]

    def transform(self, graph: ProgramGraph) -> ProgramGraph:
        node = _predict(graph, self.node, self)
        if len(self.parts) < 2:
            raise GraphEditError(f"Split of {node.name!r} needs at least two parts, got {len(self.parts)}")
        known = {f.name: f for f in (*node.signature.inputs, *node.signature.outputs)}
        originals = node.signature.output_names()
        producer: dict[str, str] = {}  # field -> the part producing it
        read: set[str] = set()
        new_nodes: list[PredictNode] = []
        for i, part in enumerate(self.parts):
            name = part.name or f"{node.name}_{i + 1}"
            inputs, outputs = _part_fields(part.signature, known, f"Split of {node.name!r}, part {i + 1}")
            bindings = []
            for spec in inputs:
                if spec.name in producer:
                    bindings.append(Binding(field=spec.name, source=Ref(node=producer[spec.name], field=spec.name)))
                elif (source := node.binding_for(spec.name)) is not None:
                    bindings.append(Binding(field=spec.name, source=source))
                else:
                    raise GraphEditError(
                        f"Split of {node.name!r}, part {i + 1} ({part.signature!r}) reads {spec.name!r}, which is "
                        f"neither an input of the node {node.signature.input_names()} nor made by an earlier part"
                    )
                read.add(spec.name)
            for spec in outputs:
                if spec.name in producer or node.binding_for(spec.name) is not None:
                    raise GraphEditError(
                        f"Split of {node.name!r}, part {i + 1} ({part.signature!r}) produces {spec.name!r}, "
                        "which is already an input of the node or an output of an earlier part"
                    )
                producer[spec.name] = name
            makes_original = any(f.name in originals for f in outputs)
            instructions = part.instructions or (node.signature.instructions if makes_original else "")
            signature = SignatureSpec(instructions=instructions, inputs=inputs, outputs=outputs)
            if not instructions:
                signature = _with_default_instructions(signature)
            new_nodes.append(
                PredictNode(
                    name=name,
                    signature=signature,
                    demos=_project_demos(node.demos, signature),
                    lm=node.lm,
                    config=node.config,
                    adapter=node.adapter,
                    bindings=bindings,
                )
            )
        missing = [f for f in originals if f not in producer]
        if missing:
            raise GraphEditError(f"Split of {node.name!r}: no part produces the node's outputs {missing}")
        unused = [f for f in producer if f not in originals and f not in read]
        if unused:
            raise GraphEditError(f"Split of {node.name!r}: intermediate outputs {unused} are read by no later part")
        nodes: list[Any] = []
        for existing in graph.nodes:
            nodes.extend(new_nodes if existing.name == node.name else [existing])
        return _rewired(graph, nodes, {(node.name, f): producer[f] for f in originals})


class AddReasoning(_Edit):
    """Give Predict node ``node`` a ``reasoning`` output before its others (ChainOfThought's field)."""

    kind: Literal["add_reasoning"] = "add_reasoning"
    node: str

    def transform(self, graph: ProgramGraph) -> ProgramGraph:
        node = _predict(graph, self.node, self)
        if REASONING.name in {f.name for f in (*node.signature.inputs, *node.signature.outputs)}:
            raise GraphEditError(f"{self!r}: node {node.name!r} already has a field {REASONING.name!r}")
        signature = node.signature.model_copy(update={"outputs": [REASONING, *node.signature.outputs]})
        updated = node.model_copy(update={"signature": signature})
        return graph.model_copy(update={"nodes": [updated if n.name == node.name else n for n in graph.nodes]})


Edit = Annotated[Fuse | Split | AddReasoning, Field(discriminator="kind")]


def apply_edit(graph: ProgramGraph, edit: Fuse | Split | AddReasoning) -> ProgramGraph:
    """The edited graph, its nodes in topological order and ``parent`` set; ``GraphEditError`` if it does not
    apply or the result is not a valid edit of ``graph``."""
    edited = edit.transform(graph)
    try:
        order = {name: i for i, name in enumerate(topological_order(edited))}
        edited = edited.model_copy(
            update={"nodes": sorted(edited.nodes, key=lambda n: order[n.name]), "parent": graph.hash}
        )
        edited = ProgramGraph.model_validate(edited.model_dump())
        validate_graph(edited, parent=graph)
    except GraphValidationError as exc:
        raise GraphEditError(
            f"{edit!r} gives an invalid graph:\n" + "\n".join(f"  - {p}" for p in exc.problems)
        ) from None
    return edited


def legal_fuses(graph: ProgramGraph) -> list[Fuse]:
    """Every Fuse of a Predict node with a Predict node reading it that applies and validates, in graph order."""
    fuses = []
    for a in graph.predict_nodes():
        for name in graph.consumers(a.name):
            if not isinstance(graph.node(name), PredictNode):
                continue
            candidate = Fuse(a=a.name, b=name)
            try:
                apply_edit(graph, candidate)
            except GraphEditError:
                continue
            fuses.append(candidate)
    return fuses


# -- helpers -------------------------------------------------------------------------------------------------------
def _predict(graph: ProgramGraph, name: str, edit: Any) -> PredictNode:
    try:
        node = graph.node(name)
    except GraphError as exc:
        raise GraphEditError(f"{edit!r}: {exc}") from None
    if not isinstance(node, PredictNode):
        raise GraphEditError(f"{edit!r}: node {name!r} is a Python step; only Predict nodes are edited")
    return node


def _rewired(graph: ProgramGraph, nodes: list[Any], producers: dict[tuple[str, str], str]) -> ProgramGraph:
    """``graph`` with ``nodes``, every binding to a replaced (node, field) pointed at its new producer."""

    def rewire(bindings: list[Binding]) -> list[Binding]:
        return [
            Binding(field=b.field, source=Ref(node=producers[key], field=b.source.field))
            if (key := (b.source.node or "", b.source.field)) in producers
            else b
            for b in bindings
        ]

    rewired = [n.model_copy(update={"bindings": rewire(n.bindings)}) for n in nodes]
    return graph.model_copy(update={"nodes": rewired, "returns": rewire(graph.returns)})


def _part_fields(text: str, known: dict[str, FieldSpec], where: str) -> tuple[list[FieldSpec], list[FieldSpec]]:
    try:
        parsed = parse_signature(text, dsr_types())
    except SignatureError as exc:
        raise GraphEditError(f"{where}: {exc}") from None
    inputs, outputs = [], []
    for name, kind, annotation, untyped in parsed:
        spec = known[name] if untyped and name in known else FieldSpec(name=name, type=type_name(annotation))
        (inputs if kind == "input" else outputs).append(spec)
    return inputs, outputs


def _with_default_instructions(signature: SignatureSpec) -> SignatureSpec:
    """The instructions dsr gives a signature that has none (``Given the fields ..., produce ...``)."""
    default = SignatureSpec.parse(signature.text).instructions
    return signature.model_copy(update={"instructions": default})


def _project_demos(demos: list[dict[str, Any]], signature: SignatureSpec) -> list[dict[str, Any]]:
    fields = signature.input_names() + signature.output_names()
    return [{f: demo[f] for f in fields} for demo in demos if all(f in demo for f in fields)]


def _merge_demos(a: PredictNode, b: PredictNode, links: list[Binding], fused: SignatureSpec) -> list[dict[str, Any]]:
    """One demo per pair (demo of a, demo of b) from the same example: b's demo holds, for every field b
    reads from a, the value a's demo produced, and the same values for the inputs both read."""
    shared = [f for f in b.signature.input_names() if f in a.signature.input_names()]
    fields = fused.input_names() + fused.output_names()
    merged, used = [], set()
    for da in a.demos:
        for j, db in enumerate(b.demos):
            if j in used:
                continue
            linked = all(f.field in db and f.source.field in da and db[f.field] == da[f.source.field] for f in links)
            if linked and all(db.get(f) == da.get(f) for f in shared):
                demo = {**db, **da}
                if all(f in demo for f in fields):
                    merged.append({f: demo[f] for f in fields})
                    used.add(j)
                break
    return merged
