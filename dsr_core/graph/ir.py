"""The program-graph IR: a DAG of Predict nodes and Python step nodes, wired field by field.

A ``ProgramGraph`` is plain data (pydantic, JSON all the way down) so it can be hashed, diffed, saved in a
program file and edited by structural optimizers without touching the Python that produced it. Every input
field of every node is bound to exactly one source: a program input (``Ref(node=None, field=...)``) or an
output field of another node. The program's outputs are bound the same way; inputs and outputs together
are the graph's boundary, which edits must keep.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import DsrError, SignatureError
from ..signatures import Signature, make_signature, parse_signature, type_name


class GraphError(DsrError):
    """A program graph could not be built, checked, edited or run; the message names the nodes and fields."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Model):
    """One field: its name, its type as dsr names it in saved state (``list[str]``), description, prefix."""

    name: str
    type: str = "str"
    desc: str = ""
    prefix: str | None = None


class SignatureSpec(_Model):
    """A signature as data: instructions and the input and output fields, in order."""

    instructions: str = ""
    inputs: list[FieldSpec]
    outputs: list[FieldSpec]

    @classmethod
    def from_signature(cls, signature: type[Signature]) -> SignatureSpec:
        def spec(field: Any) -> FieldSpec:
            return FieldSpec(name=field.name, type=type_name(field.annotation), desc=field.desc, prefix=field.prefix)

        return cls(
            instructions=signature.instructions,
            inputs=[spec(f) for f in signature.input_fields.values()],
            outputs=[spec(f) for f in signature.output_fields.values()],
        )

    @classmethod
    def parse(cls, text: str, instructions: str = "") -> SignatureSpec:
        """A spec from an inline signature (``"question, context: list[str] -> answer"``)."""
        return cls.from_signature(make_signature(text, instructions or None))

    def to_signature(self) -> type[Signature]:
        """The signature class: the types parsed back with dsr's own signature parser."""
        typed = ", ".join(f"{f.name}: {f.type}" for f in self.inputs)
        text = f"{typed} -> {', '.join(f'{f.name}: {f.type}' for f in self.outputs)}"
        signature = make_signature(text, self.instructions, custom_types=dsr_types())
        for field in (*self.inputs, *self.outputs):
            signature = signature.with_updated_fields(field.name, desc=field.desc, prefix=field.prefix)
        return signature

    @property
    def text(self) -> str:
        """The compact form: ``question, context -> answer``."""
        return f"{', '.join(f.name for f in self.inputs)} -> {', '.join(f.name for f in self.outputs)}"

    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]


def dsr_types() -> dict[str, Any]:
    """dsr's own field types by the names ``type_name`` gives them, so a saved graph can name them."""
    from ..adapters import Code, History, Image, Reasoning, Tool, ToolCalls

    return {t.__name__: t for t in (Code, History, Image, Reasoning, Tool, ToolCalls)}


def parse_type(text: str) -> Any:
    """The annotation a type name stands for (``"list[str]"`` -> ``list[str]``)."""
    try:
        return parse_signature(f"x: {text} -> y", dsr_types())[0][2]
    except SignatureError as exc:
        raise GraphError(f"type {text!r} cannot be read back: {exc}") from None


REASONING = FieldSpec(name="reasoning", type="str", desc="", prefix="Reasoning:")
"""The field ``AddReasoning`` adds, as ChainOfThought declares it."""


class Ref(_Model):
    """Where a value comes from: an output field of node ``node``, or the program input ``field`` (node None)."""

    node: str | None = None
    field: str

    def __str__(self) -> str:
        return f"{self.node or 'input'}.{self.field}"


class Binding(_Model):
    """``field`` (an input of the node that holds the binding, or a program output) reads ``source``."""

    field: str
    source: Ref


class _Node(_Model):
    name: str
    bindings: list[Binding] = []

    def binding_for(self, field: str) -> Ref | None:
        return next((b.source for b in self.bindings if b.field == field), None)

    def sources(self) -> set[str]:
        """The names of the nodes this node reads from."""
        return {b.source.node for b in self.bindings if b.source.node is not None}


class PredictNode(_Node):
    """One LM call: a signature with its demos, LM settings (``LM.dump_state()``, None: the configured LM)
    and Predict config."""

    kind: Literal["predict"] = "predict"
    signature: SignatureSpec
    demos: list[dict[str, Any]] = []
    lm: dict[str, Any] | None = None
    config: dict[str, Any] = {}
    adapter: str | None = None  # the predictor's own adapter as ``module:Class`` (None: the call's default)

    @property
    def input_fields(self) -> list[FieldSpec]:
        return self.signature.inputs

    @property
    def output_fields(self) -> list[FieldSpec]:
        return self.signature.outputs


class StepNode(_Node):
    """The program's plain Python between LM calls (retrieval, formatting).

    ``function`` is the ``module:function`` reference of a function marked with ``dsr_core.graph.step``: the
    interpreter calls it with the input fields as keywords. A step without one was seen only as a value no
    node or input produced; its inputs are the sources found inside that value, and running the graph
    needs the code to be marked as a step first.
    """

    kind: Literal["step"] = "step"
    inputs: list[FieldSpec] = []
    outputs: list[FieldSpec]
    function: str | None = None

    @property
    def input_fields(self) -> list[FieldSpec]:
        return self.inputs

    @property
    def output_fields(self) -> list[FieldSpec]:
        return self.outputs


Node = Annotated[PredictNode | StepNode, Field(discriminator="kind")]


class ProgramGraph(_Model):
    """A program as a DAG. Traced and edited graphs list ``nodes`` so that each comes after the nodes it
    reads (the validator asks only for no cycles); ``parent`` is the hash of the graph an edit was applied to
    (None for a traced graph); ``program`` names the class it was traced from."""

    inputs: list[FieldSpec]
    outputs: list[FieldSpec]
    returns: list[Binding]
    nodes: list[Node]
    parent: str | None = None
    program: str | None = None

    @property
    def hash(self) -> str:
        """sha256 over the canonical JSON of the content (lineage excluded: equal graphs, equal hashes)."""
        blob = json.dumps(
            self.model_dump(mode="json", exclude={"parent"}), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def node(self, name: str) -> PredictNode | StepNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise GraphError(f"no node {name!r} in the graph; nodes: {[n.name for n in self.nodes]}")

    def predict_nodes(self) -> list[PredictNode]:
        return [n for n in self.nodes if isinstance(n, PredictNode)]

    def consumers(self, name: str) -> list[str]:
        """The nodes reading any output of node ``name``, in graph order."""
        return [n.name for n in self.nodes if name in n.sources()]

    @property
    def lm_calls_per_run(self) -> int:
        return len(self.predict_nodes())

    def field_type(self, ref: Ref) -> str:
        """The declared type of the value ``ref`` points at."""
        fields = self.inputs if ref.node is None else self.node(ref.node).output_fields
        for field in fields:
            if field.name == ref.field:
                return field.type
        raise GraphError(f"{ref} does not exist")
