"""Programs as graphs: tracing, the interpreter, edits, the validator, rendering, save and load.

Everything runs against the OpenAI-compatible test server. Its responder models a small world by field
name (see ``world``), so an edited graph (fused, split) can give the same answers as the program it came
from, as a capable model would.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dsr_core as dsr
from dsr_core.graph import (
    AddReasoning,
    Binding,
    Fuse,
    GraphEditError,
    GraphError,
    GraphProgram,
    GraphValidationError,
    PredictNode,
    ProgramGraph,
    Ref,
    SignatureSpec,
    Split,
    SplitPart,
    StepNode,
    UnplaceableNodesError,
    apply_edit,
    atrace_program,
    graph_in_state,
    is_widening,
    legal_fuses,
    load_graph_program,
    propose_split,
    render_dot,
    render_png,
    render_text,
    split_from_proposal,
    step,
    validate_graph,
)

# -- the world the test server models -------------------------------------------------------------------------------


def _keywords(values: dict[str, str]) -> str:
    return (values.get("query") or values["question"].upper()).replace(" ", ",")


RULES = {
    "query": lambda v: v["question"].upper(),
    "keywords": _keywords,
    "summary": lambda v: f"summary of {v['question']}",
    "answer": lambda v: f"{v['question']}:{v.get('keywords') or _keywords(v)}",
    "reasoning": lambda v: "thinking it through",
}


def world(request):
    """Every output field by its rule, computed in the order asked, each from the inputs and the outputs before it."""
    if "sub_signatures" in request.output_fields:
        return request.reply(
            sub_signatures=["1. question -> keywords", "2. question, keywords -> answer"],
            sub_instructions=["List the keywords.", "Answer from the keywords."],
        )
    values = dict(request.inputs)
    produced = {}
    for name in request.output_fields:
        produced[name] = values[name] = RULES[name](values)
    return request.reply(**produced)


@pytest.fixture
def lm(server):
    """An uncached LM on the test server, so every run's requests reach it and can be counted."""
    server.responder = world
    return dsr.LM("test-model", api_base=server.url, cache=False, retry_backoff=(0.01, 0.05), timeout=5.0)


@pytest.fixture(autouse=True)
def configured(lm):
    dsr.configure(lm=lm)


def questions(*texts):
    return [dsr.Example(question=t).with_inputs("question") for t in texts]


TRAIN = questions("what is rain", "why is the sky blue", "how do birds fly")
OTHER = questions("who wrote faust", "where is lima")


# -- programs ----------------------------------------------------------------------------------------------------------


@step(output="passages")
def retrieve(query: str) -> list[str]:
    return [f"doc about {query}", f"notes on {query}"]


class RetrieveAnswer(dsr.Module):
    """Rewrite, retrieve (plain Python, marked as a step), answer with reasoning."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.answer = dsr.ChainOfThought("question, passages: list[str] -> keywords, answer")

    async def aforward(self, question):
        query = (await self.rewrite.acall(question=question)).query
        return await self.answer.acall(question=question, passages=retrieve(query))


class UnmarkedContext(dsr.Module):
    """Plain Python between the calls that is not marked as a step (``[query]``)."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.answer = dsr.ChainOfThought("question, context: list[str] -> answer")

    async def aforward(self, question):
        query = (await self.rewrite.acall(question=question)).query
        return await self.answer.acall(question=question, context=[query])


class ThreeSteps(dsr.Module):
    """rewrite -> expand -> answer: two adjacent steps that fuse at no loss."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.expand = dsr.Predict("query -> keywords")
        self.answer = dsr.Predict("question, keywords -> answer")

    def forward(self, question):
        query = self.rewrite(question=question).query
        keywords = self.expand(query=query).keywords
        return dsr.Prediction(answer=self.answer(question=question, keywords=keywords).answer)


class TwoViews(dsr.Module):
    """Two predictors reading only the question (independent), then one combining them; run one by one."""

    def __init__(self):
        self.summarize = dsr.Predict("question -> summary")
        self.keywords = dsr.Predict("question -> keywords")
        self.combine = dsr.Predict("question, summary, keywords -> answer")

    async def aforward(self, question):
        summary = (await self.summarize.acall(question=question)).summary
        keywords = (await self.keywords.acall(question=question)).keywords
        return await self.combine.acall(question=question, summary=summary, keywords=keywords)


class Overloaded(dsr.Module):
    def __init__(self):
        self.solve = dsr.Predict("question -> keywords, answer")

    async def aforward(self, question):
        return await self.solve.acall(question=question)


class Branching(dsr.Module):
    def __init__(self):
        self.short = dsr.Predict("question -> answer")
        self.long = dsr.Predict("question -> answer")

    async def aforward(self, question):
        chosen = self.short if len(question) < 13 else self.long
        return await chosen.acall(question=question)


class Rewiring(dsr.Module):
    """Both predictors always run, but where the answer's question comes from depends on the data."""

    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")
        self.answer = dsr.Predict("question -> answer")

    async def aforward(self, question):
        query = (await self.rewrite.acall(question=question)).query
        return await self.answer.acall(question=query if len(question) < 13 else question)


class Looping(dsr.Module):
    def __init__(self):
        self.rewrite = dsr.Predict("question -> query")

    async def aforward(self, question):
        for _ in question.split():
            question = (await self.rewrite.acall(question=question)).query.lower()
        return dsr.Prediction(answer=question)


def outputs(prediction):
    return dict(prediction.items())


# -- tracing ----------------------------------------------------------------------------------------------------------


async def test_trace_pipeline_with_a_python_step_between():
    program = RetrieveAnswer()
    graph = await atrace_program(program, TRAIN)
    assert [n.name for n in graph.nodes] == ["rewrite", "retrieve", "answer.predict"]
    assert [n.name for n in graph.predict_nodes()] == [name for name, _ in program.named_predictors()]
    rewrite, retrieve_node, answer = graph.nodes
    assert isinstance(retrieve_node, StepNode) and retrieve_node.function.endswith(":retrieve")
    assert rewrite.bindings == [Binding(field="question", source=Ref(field="question"))]
    assert retrieve_node.bindings == [Binding(field="query", source=Ref(node="rewrite", field="query"))]
    assert [f.name for f in retrieve_node.outputs] == ["passages"]
    assert {b.field: str(b.source) for b in answer.bindings} == {
        "question": "input.question",
        "passages": "retrieve.passages",
    }
    assert answer.signature.output_names() == ["reasoning", "keywords", "answer"]
    assert answer.signature.to_signature().hash == program.answer.predict.signature.hash  # the same prompt
    assert {b.field: str(b.source) for b in graph.returns} == {
        "reasoning": "answer.predict.reasoning",
        "keywords": "answer.predict.keywords",
        "answer": "answer.predict.answer",
    }
    assert [(f.name, f.type) for f in graph.inputs] == [("question", "str")]
    assert graph.lm_calls_per_run == 2 and graph.parent is None
    assert graph.program == "tests.test_graph:RetrieveAnswer"


async def test_unmarked_python_becomes_an_opaque_step_the_interpreter_refuses():
    graph = await atrace_program(UnmarkedContext(), TRAIN)
    opaque = graph.node("python:answer.predict.context")
    assert isinstance(opaque, StepNode) and opaque.function is None
    assert opaque.bindings == [Binding(field="query", source=Ref(node="rewrite", field="query"))]
    assert graph.node("answer.predict").binding_for("context") == Ref(node=opaque.name, field="context")
    with pytest.raises(GraphError, match=r"python:answer\.predict\.context.*@dsr_core\.graph\.step"):
        GraphProgram(graph)


async def test_data_dependent_branch_is_reported_with_its_nodes():
    with pytest.raises(UnplaceableNodesError) as caught:
        await atrace_program(Branching(), questions("short one", "a much longer question here"))
    assert caught.value.nodes == ["short", "long"]
    assert "short: called on some examples but not on examples [1] (a data-dependent branch)" in str(caught.value)


async def test_loop_with_a_varying_number_of_calls_is_reported():
    with pytest.raises(UnplaceableNodesError) as caught:
        await atrace_program(Looping(), questions("one", "one two three"))
    assert caught.value.nodes == ["rewrite"]
    assert "varying number of times per run: [1, 3]" in str(caught.value)


async def test_data_dependent_wiring_is_reported():
    with pytest.raises(UnplaceableNodesError) as caught:
        await atrace_program(Rewiring(), questions("short one", "a much longer question here"))
    assert caught.value.nodes == ["answer"]
    assert (
        "input 'question' comes from different places on different examples "
        "(example 0: ['rewrite.query']; example 1: ['input.question'])" in str(caught.value)
    )


async def test_predictor_never_called_is_reported():
    with pytest.raises(UnplaceableNodesError, match="long: declared by the program but never called"):
        await atrace_program(Branching(), questions("short one", "another"))


# -- the interpreter -------------------------------------------------------------------------------------------------


async def test_graph_program_gives_the_programs_results(server):
    program = RetrieveAnswer()
    graph_program = await GraphProgram.afrom_program(program, TRAIN)
    assert [n for n, _ in graph_program.named_predictors()] == ["rewrite", "answer.predict"]
    for example in OTHER:
        expected = outputs(await program.acall(**example.inputs()))
        server.reset_stats()
        assert outputs(await graph_program.acall(**example.inputs())) == expected
        assert server.stats.requests == 2
    assert outputs(graph_program(question="sync call")) == outputs(program(question="sync call"))
    retraced = await atrace_program(graph_program, TRAIN)  # the graph program draws the same graph
    assert retraced.nodes == graph_program.graph.nodes and retraced.returns == graph_program.graph.returns


async def test_independent_nodes_run_concurrently(server):
    server.latency = 0.1
    program = TwoViews()
    graph = await atrace_program(program, TRAIN)
    assert graph.node("combine").sources() == {"summarize", "keywords"}
    server.reset_stats()
    expected = outputs(await program.acall(question="is it raining"))
    assert server.stats.max_in_flight == 1  # the Python program awaits one call after the other
    server.reset_stats()
    assert outputs(await GraphProgram(graph).acall(question="is it raining")) == expected
    assert server.stats.max_in_flight == 2 and server.stats.requests == 3


async def test_graph_program_is_tuned_by_an_optimizer_and_loads_the_programs_state():
    from dsr_core.optimizers import LabeledFewShot

    program = ThreeSteps()
    graph_program = await GraphProgram.afrom_program(program, TRAIN)
    program.expand.demos = [{"query": "A B", "keywords": "A,B"}]
    graph_program.load_state(program.dump_state())  # the same predictor names: the program's file fits
    assert graph_program.to_graph().node("expand").demos == [{"query": "A B", "keywords": "A,B"}]
    train = [dsr.Example(question="q", answer="a").with_inputs("question")]
    compiled = LabeledFewShot(k=1).compile(graph_program, train)
    assert compiled.to_graph().node("answer").demos == [{"question": "q", "answer": "a"}]


# -- edits -----------------------------------------------------------------------------------------------------------


async def test_fuse_cuts_lm_calls_and_keeps_outputs(server):
    program = ThreeSteps()
    graph = await atrace_program(program, TRAIN)
    assert legal_fuses(graph) == [Fuse(a="rewrite", b="expand"), Fuse(a="expand", b="answer")]
    fused = apply_edit(graph, Fuse(a="rewrite", b="expand"))
    node = fused.node("rewrite+expand")
    assert node.signature.text == "question -> query, keywords"
    assert fused.node("answer").binding_for("keywords") == Ref(node="rewrite+expand", field="keywords")
    assert fused.parent == graph.hash and fused.lm_calls_per_run == 2
    for example in OTHER:
        server.reset_stats()
        expected = outputs(await program.acall(**example.inputs()))
        assert server.stats.requests == 3
        server.reset_stats()
        assert outputs(await GraphProgram(fused).acall(**example.inputs())) == expected
        assert server.stats.requests == 2


async def test_fuse_merges_demos_from_the_same_example_and_refuses_non_adjacent_nodes():
    program = ThreeSteps()
    program.rewrite.demos = [{"question": "a b", "query": "A B"}, {"question": "c", "query": "C"}]
    program.expand.demos = [{"query": "X", "keywords": "X"}, {"query": "A B", "keywords": "A,B"}]
    graph = await atrace_program(program, TRAIN)
    fused = apply_edit(graph, Fuse(a="rewrite", b="expand", name="rewrite_expand"))
    assert fused.node("rewrite_expand").demos == [{"question": "a b", "query": "A B", "keywords": "A,B"}]
    with pytest.raises(GraphEditError, match="'answer' reads no output of 'rewrite'"):
        apply_edit(graph, Fuse(a="rewrite", b="answer"))


async def test_split_and_add_reasoning_give_valid_graphs_that_run(server):
    program = Overloaded()
    graph = await atrace_program(program, TRAIN)
    split = Split(
        node="solve",
        parts=[SplitPart(signature="question -> keywords"), SplitPart(signature="question, keywords -> answer")],
    )
    edited = apply_edit(graph, split)
    assert [n.name for n in edited.nodes] == ["solve_1", "solve_2"]
    assert edited.node("solve_2").signature.instructions == graph.node("solve").signature.instructions
    assert {b.field: str(b.source) for b in edited.returns} == {
        "keywords": "solve_1.keywords",
        "answer": "solve_2.answer",
    }
    expected = outputs(await program.acall(question="where is lima"))
    server.reset_stats()
    assert outputs(await GraphProgram(edited).acall(question="where is lima")) == expected
    assert server.stats.requests == 2

    reasoned = apply_edit(edited, AddReasoning(node="solve_2"))
    assert reasoned.parent == edited.hash
    assert reasoned.node("solve_2").signature.output_names() == ["reasoning", "answer"]
    assert outputs(await GraphProgram(reasoned).acall(question="where is lima")) == expected
    asked = server.requests[-1]["messages"][-1]["content"]
    assert "[[ ## reasoning ## ]]" in asked

    with pytest.raises(GraphEditError, match=r"reads 'query', which is neither an input of the node"):
        apply_edit(
            graph,
            Split(
                node="solve",
                parts=[SplitPart(signature="query -> keywords"), SplitPart(signature="question -> answer")],
            ),
        )
    with pytest.raises(GraphEditError, match=r"no part produces the node's outputs \['answer'\]"):
        apply_edit(
            graph,
            Split(
                node="solve", parts=[SplitPart(signature="question -> hint"), SplitPart(signature="hint -> keywords")]
            ),
        )


async def test_split_then_fuse_round_trips_the_field_sets():
    graph = await atrace_program(Overloaded(), TRAIN)
    split = apply_edit(
        graph,
        Split(
            node="solve",
            parts=[SplitPart(signature="question -> keywords"), SplitPart(signature="question, keywords -> answer")],
        ),
    )
    fused = apply_edit(split, Fuse(a="solve_1", b="solve_2"))
    (node,) = fused.predict_nodes()
    assert node.signature.inputs == graph.node("solve").signature.inputs
    assert node.signature.outputs == graph.node("solve").signature.outputs


async def test_a_prompt_lm_proposes_a_split():
    graph = await atrace_program(Overloaded(), TRAIN)
    split = await propose_split(graph, "solve")
    assert [p.signature for p in split.parts] == ["question -> keywords", "question, keywords -> answer"]
    assert split.parts[1].instructions == "Answer from the keywords."
    assert validate_graph(apply_edit(graph, split), parent=graph) is None
    with pytest.raises(GraphEditError, match="reads 'hint'"):
        split_from_proposal(graph, "solve", ["hint -> keywords", "question -> answer"])


async def test_edits_are_serializable_and_deterministic():
    from pydantic import TypeAdapter

    from dsr_core.graph import Edit

    graph = await atrace_program(ThreeSteps(), TRAIN)
    edits = [Fuse(a="rewrite", b="expand"), AddReasoning(node="answer")]
    adapter = TypeAdapter(list[Edit])
    loaded = adapter.validate_json(adapter.dump_json(edits))
    assert loaded == edits
    once, twice = graph, graph
    for edit in edits:
        once = apply_edit(once, edit)
    for edit in loaded:
        twice = apply_edit(twice, edit)
    assert once.hash == twice.hash and once.model_dump() == twice.model_dump()


# -- the validator ---------------------------------------------------------------------------------------------------


def _rebind(graph: ProgramGraph, node: str, bindings: list[Binding]) -> ProgramGraph:
    nodes = [n.model_copy(update={"bindings": bindings}) if n.name == node else n for n in graph.nodes]
    return graph.model_copy(update={"nodes": nodes})


async def test_validator_rejects_a_cycle_a_double_binding_and_a_changed_boundary():
    graph = await atrace_program(ThreeSteps(), TRAIN)
    cyclic = _rebind(graph, "rewrite", [Binding(field="question", source=Ref(node="answer", field="answer"))])
    with pytest.raises(GraphValidationError, match=r"cycle through nodes \['answer', 'expand', 'rewrite'\]"):
        validate_graph(cyclic)
    answer = graph.node("answer")
    doubled = _rebind(
        graph, "answer", [*answer.bindings, Binding(field="question", source=Ref(node="rewrite", field="query"))]
    )
    with pytest.raises(GraphValidationError, match="input 'question' of node 'answer' is bound 2 times"):
        validate_graph(doubled)
    unbound = _rebind(graph, "answer", answer.bindings[:1])
    with pytest.raises(GraphValidationError, match="input 'keywords' of node 'answer' is bound 0 times"):
        validate_graph(unbound)
    dangling = _rebind(
        graph, "answer", [answer.bindings[0], Binding(field="keywords", source=Ref(node="expand", field="nope"))]
    )
    with pytest.raises(GraphValidationError, match="node 'expand' has no output 'nope'"):
        validate_graph(dangling)

    renamed = graph.model_copy(
        update={
            "outputs": [graph.outputs[0].model_copy(update={"name": "reply"})],
            "returns": [graph.returns[0].model_copy(update={"field": "reply"})],
        }
    )
    validate_graph(renamed)  # valid on its own
    with pytest.raises(GraphValidationError, match=r"program outputs changed from \['answer'\] to \['reply'\]"):
        validate_graph(renamed, parent=graph)
    more_inputs = graph.model_copy(
        update={"inputs": [*graph.inputs, graph.inputs[0].model_copy(update={"name": "topic"})]}
    )
    with pytest.raises(GraphValidationError, match="program inputs changed"):
        validate_graph(more_inputs, parent=graph)


async def test_validator_allows_wider_output_types_only():
    graph = await atrace_program(ThreeSteps(), TRAIN)
    node = graph.node("answer")

    def answer_typed(type_: str) -> ProgramGraph:
        spec = node.signature.outputs[0].model_copy(update={"type": type_})
        updated = node.model_copy(update={"signature": node.signature.model_copy(update={"outputs": [spec]})})
        out = graph.outputs[0].model_copy(update={"type": type_})
        return graph.model_copy(
            update={"nodes": [updated if n.name == "answer" else n for n in graph.nodes], "outputs": [out]}
        )

    validate_graph(answer_typed("Optional[str]"), parent=graph)
    with pytest.raises(GraphValidationError, match="'answer' was str and is now int"):
        validate_graph(answer_typed("int"), parent=graph)
    assert is_widening("str", "Union[str, int]") and is_widening("int", "Any")
    assert not is_widening("Optional[str]", "str") and not is_widening("list[str]", "list[int]")


# -- identity, lineage, pictures, files --------------------------------------------------------------------------------


async def test_content_hash_is_stable_and_edits_record_their_parent(tmp_path):
    graph = await atrace_program(RetrieveAnswer(), TRAIN)
    again = await atrace_program(RetrieveAnswer(), OTHER)
    assert graph.hash == again.hash and len(graph.hash) == 64
    path = tmp_path / "graph.json"
    path.write_text(graph.model_dump_json())
    code = "import sys; from dsr_core.graph import ProgramGraph; print(ProgramGraph.model_validate_json(open(sys.argv[1]).read()).hash)"
    other_process = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == graph.hash
    reasoned = apply_edit(graph, AddReasoning(node="rewrite"))
    assert reasoned.parent == graph.hash and reasoned.hash != graph.hash
    assert apply_edit(graph, AddReasoning(node="rewrite")).hash == reasoned.hash  # edits are deterministic


async def test_render_text_and_dot(tmp_path):
    graph = await atrace_program(RetrieveAnswer(), TRAIN)
    text = render_text(graph)
    assert "3 nodes, 2 LM calls per run" in text
    assert "[predict] rewrite: question -> query" in text
    assert "[step]    retrieve: query -> passages  (tests.test_graph:retrieve)" in text
    assert "    passages <- retrieve.passages" in text and "    answer <- answer.predict.answer" in text
    dot = render_dot(graph)
    assert dot.startswith("digraph program {") and dot.rstrip().endswith("}")
    assert '"node:rewrite" -> "node:retrieve" [label="query"];' in dot
    assert '"input" -> "node:rewrite" [label="question"];' in dot
    assert '"node:answer.predict" -> "output" [label="answer"];' in dot
    picture = render_png(graph, tmp_path / "graph.png")
    assert picture is None or picture.read_bytes().startswith(b"\x89PNG")


async def test_save_and_load_round_trip_runs_identically(tmp_path, server, lm):
    program = ThreeSteps()
    graph = apply_edit(await atrace_program(program, TRAIN), Fuse(a="rewrite", b="expand"))
    saved = GraphProgram(graph)
    saved.set_lm(lm)
    saved.__dict__["answer"].demos = [{"question": "q", "keywords": "K", "answer": "q:K"}]
    path = tmp_path / "program.json"
    saved.save(path)
    content = json.loads(path.read_text())
    assert set(content) == {"rewrite+expand", "answer", "metadata"}
    assert content["metadata"]["program"] == "dsr_core.graph.interpreter:GraphProgram"
    assert graph.parent is not None and graph_in_state(content).parent == graph.parent

    loaded = load_graph_program(path)
    into_empty = GraphProgram().load(path)
    by_name = dsr.load_program(str(path))  # the class the file names, rebuilt from the graph it carries
    assert isinstance(by_name, GraphProgram)
    for copy in (loaded, into_empty, by_name):
        assert copy.to_graph().hash == saved.to_graph().hash
        assert copy.__dict__["answer"].demos == saved.__dict__["answer"].demos
        assert copy.__dict__["answer"].lm.api_base == lm.api_base  # the LM comes back from the file
    for example in OTHER:
        server.reset_stats()
        expected = outputs(await saved.acall(**example.inputs()))
        assert outputs(await loaded.acall(**example.inputs())) == expected
        assert server.stats.requests == 4


def test_graph_nodes_are_plain_json():
    node = PredictNode(name="n", signature=SignatureSpec.parse("question -> answer: int"), bindings=[])
    assert json.loads(node.model_dump_json())["signature"]["outputs"][0]["type"] == "int"


async def test_bare_predict_traces_saves_and_loads(tmp_path):
    predict = dsr.Predict("question -> keywords, answer")
    program = await GraphProgram.afrom_program(predict, TRAIN)
    assert [n for n, _ in program.named_predictors()] == ["self"]
    program.save(tmp_path / "predict.json")
    content = json.loads((tmp_path / "predict.json").read_text())
    assert "signature" in content and "graph" in content["metadata"]  # DSPy's flat layout for one predictor
    loaded = load_graph_program(tmp_path / "predict.json")
    assert outputs(await loaded.acall(question="where is lima")) == outputs(
        await predict.acall(question="where is lima")
    )


async def test_a_predictors_own_adapter_survives_the_graph(tmp_path):
    predict = dsr.Predict("question -> answer", adapter=dsr.JSONAdapter())
    program = await GraphProgram.afrom_program(predict, TRAIN)
    assert program.graph.nodes[0].adapter == "dsr_core.adapters.json_adapter:JSONAdapter"
    program.save(tmp_path / "p.json")
    loaded = load_graph_program(tmp_path / "p.json")
    assert isinstance(loaded.__dict__["self"].adapter, dsr.JSONAdapter)
