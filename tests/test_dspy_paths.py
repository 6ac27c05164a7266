"""DSPy 3.x's deeper module paths (``from dspy.predict.react import ReAct``) work with ``dsr_core`` in place of
``dspy``, and give the very objects of dsr's top level."""

from __future__ import annotations

import importlib
import re

import pytest

import dsr_core as dsr

# (DSPy's module path with dspy replaced by dsr_core, name): the object is dsr_core.<name>
TOP_LEVEL = [
    ("dsr_core.predict", "Predict"),
    ("dsr_core.predict", "ReAct"),
    ("dsr_core.predict.predict", "Predict"),
    ("dsr_core.predict.chain_of_thought", "ChainOfThought"),
    ("dsr_core.predict.react", "ReAct"),
    ("dsr_core.predict.react", "Tool"),
    ("dsr_core.predict.react", "ToolCalls"),
    ("dsr_core.predict.refine", "Refine"),
    ("dsr_core.predict.best_of_n", "BestOfN"),
    ("dsr_core.predict.parallel", "Parallel"),
    ("dsr_core.predict.multi_chain_comparison", "MultiChainComparison"),
    ("dsr_core.predict.aggregation", "majority"),
    ("dsr_core.primitives", "Example"),
    ("dsr_core.primitives", "Prediction"),
    ("dsr_core.primitives.example", "Example"),
    ("dsr_core.primitives.prediction", "Prediction"),
    ("dsr_core.primitives.prediction", "Completions"),
    ("dsr_core.primitives.module", "Module"),
    ("dsr_core.signatures", "Signature"),
    ("dsr_core.signatures.signature", "Signature"),
    ("dsr_core.signatures.signature", "SignatureMeta"),
    ("dsr_core.signatures.signature", "ensure_signature"),
    ("dsr_core.signatures.signature", "make_signature"),
    ("dsr_core.signatures.signature", "infer_prefix"),
    ("dsr_core.signatures.field", "InputField"),
    ("dsr_core.signatures.field", "OutputField"),
    ("dsr_core.adapters", "ChatAdapter"),
    ("dsr_core.adapters.base", "Adapter"),
    ("dsr_core.adapters.json_adapter", "JSONAdapter"),
    ("dsr_core.adapters.types", "Tool"),
    ("dsr_core.adapters.types", "ToolCalls"),
    ("dsr_core.adapters.types", "History"),
    ("dsr_core.adapters.types", "Image"),
    ("dsr_core.adapters.types", "Code"),
    ("dsr_core.adapters.types", "Reasoning"),
    ("dsr_core.adapters.types", "Type"),
    ("dsr_core.evaluate", "Evaluate"),
    ("dsr_core.evaluate", "answer_exact_match"),
    ("dsr_core.evaluate.evaluate", "Evaluate"),
    ("dsr_core.evaluate.evaluate", "EvaluationResult"),
    ("dsr_core.evaluate.metrics", "EM"),
    ("dsr_core.evaluate.metrics", "normalize_text"),
    ("dsr_core.evaluate.metrics", "answer_exact_match"),
    ("dsr_core.evaluate.metrics", "answer_passage_match"),
    ("dsr_core.evaluate.auto_evaluation", "SemanticF1"),
    ("dsr_core.evaluate.auto_evaluation", "CompleteAndGrounded"),
    ("dsr_core.teleprompt", "MIPROv2"),
    ("dsr_core.teleprompt.bootstrap", "BootstrapFewShot"),
    ("dsr_core.teleprompt.vanilla", "LabeledFewShot"),
    ("dsr_core.teleprompt.random_search", "BootstrapFewShotWithRandomSearch"),
    ("dsr_core.teleprompt.copro_optimizer", "COPRO"),
    ("dsr_core.teleprompt.mipro_optimizer_v2", "MIPROv2"),
    ("dsr_core.teleprompt.simba", "SIMBA"),
    ("dsr_core.teleprompt.gepa", "GEPA"),
    ("dsr_core.teleprompt.gepa.gepa", "GEPA"),
    ("dsr_core.teleprompt.ensemble", "Ensemble"),
    ("dsr_core.clients", "LM"),
    ("dsr_core.clients", "BaseLM"),
    ("dsr_core.clients", "inspect_history"),
    ("dsr_core.clients.lm", "LM"),
    ("dsr_core.clients.base_lm", "BaseLM"),
    ("dsr_core.clients.base_lm", "inspect_history"),
    ("dsr_core.utils.callback", "BaseCallback"),
    ("dsr_core.utils.callback", "with_callbacks"),
    ("dsr_core.utils.usage_tracker", "track_usage"),
]

# names of those paths that dsr has below its top level: (path, name, dsr's home of the object)
ELSEWHERE = [
    ("dsr_core.predict.refine", "OfferFeedback", "dsr_core.modules.refine"),
    ("dsr_core.predict.aggregation", "default_normalize", "dsr_core.modules.aggregation"),
    ("dsr_core.evaluate.metrics", "em_score", "dsr_core.metrics"),
    ("dsr_core.evaluate.auto_evaluation", "SemanticRecallPrecision", "dsr_core.metrics"),
    ("dsr_core.evaluate.auto_evaluation", "DecompositionalSemanticRecallPrecision", "dsr_core.metrics"),
    ("dsr_core.evaluate.auto_evaluation", "AnswerCompleteness", "dsr_core.metrics"),
    ("dsr_core.evaluate.auto_evaluation", "AnswerGroundedness", "dsr_core.metrics"),
    ("dsr_core.teleprompt", "Teleprompter", "dsr_core.optimizers.base:Optimizer"),
    ("dsr_core.teleprompt.teleprompt", "Teleprompter", "dsr_core.optimizers.base:Optimizer"),
    ("dsr_core.clients.base_lm", "GLOBAL_HISTORY", "dsr_core.lm.history"),
    ("dsr_core.utils.usage_tracker", "UsageTracker", "dsr_core.tracking"),
]


@pytest.mark.parametrize(("path", "name"), TOP_LEVEL)
def test_dspy_path_gives_dsrs_top_level_object(path, name):
    assert getattr(importlib.import_module(path), name) is getattr(dsr, name)
    exec(f"from {path} import {name} as imported", namespace := {})  # the ``from ... import`` form, as written
    assert namespace["imported"] is getattr(dsr, name)


@pytest.mark.parametrize(("path", "name", "home"), ELSEWHERE)
def test_dspy_path_gives_dsrs_object(path, name, home):
    module, _, attribute = home.partition(":")
    assert getattr(importlib.import_module(path), name) is getattr(importlib.import_module(module), attribute or name)


def test_subpackages_are_attributes_of_the_package():
    """In a fresh process (nothing imported them before), as DSPy programs reach them: ``dspy.predict.react``."""
    import subprocess
    import sys

    reached = [
        "dspy.clients.LM is dspy.LM",
        "dspy.predict.react.ReAct is dspy.ReAct",
        "dspy.evaluate.Evaluate is dspy.Evaluate",
        "dspy.teleprompt.knn_fewshot.KNNFewShot is dspy.KNNFewShot",
        "dspy.adapters.chat_adapter.ChatAdapter is dspy.ChatAdapter",
        "dspy.adapters.xml_adapter.XMLAdapter is dspy.XMLAdapter",
        "dspy.primitives.example.Example is dspy.Example",
        "dspy.signatures.field.InputField is dspy.InputField",
        "dspy.utils.usage_tracker is not None",
        "dspy.clients.embedding.Embedder is dspy.Embedder",
    ]
    script = "import dsr_core as dspy\n" + "\n".join(f"assert {check}, {check!r}" for check in reached)
    script += "\ntry:\n    dspy.predict.no_such_module\nexcept AttributeError as e:\n    print(e)"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "module 'dsr_core.predict' has no attribute 'no_such_module'"


CAPITALS = {"France": "Paris", "Peru": "Lima", "Japan": "Tokyo"}


def capital_of(country: str) -> str:
    """Look up the capital city of a country."""
    return CAPITALS[country]


def test_a_dspy_program_written_with_deep_imports_runs(server, lm):
    """A DSPy tutorial-style program whose only change is ``dspy`` -> ``dsr_core`` in its imports."""
    from dsr_core.evaluate.evaluate import Evaluate, EvaluationResult
    from dsr_core.evaluate.metrics import answer_exact_match
    from dsr_core.predict.react import ReAct, Tool
    from dsr_core.primitives.example import Example
    from dsr_core.primitives.module import Module
    from dsr_core.signatures.field import InputField, OutputField
    from dsr_core.signatures.signature import Signature

    def respond(request):
        inputs = request.inputs
        if "next_tool_name" in request.output_fields:
            if "observation_0" in inputs:
                return request.reply(next_thought="Done.", next_tool_name="finish", next_tool_args={})
            country = re.search(r"capital of (\w+)", inputs["question"]).group(1)
            return request.reply(
                next_thought="Look it up.", next_tool_name="capital_of", next_tool_args={"country": country}
            )
        observation = inputs.get("observation_0", "")
        answer = "unknown" if observation.startswith("Execution error") else observation
        return request.reply(reasoning="The tool said so.", answer=answer)

    server.responder = respond
    dsr.configure(lm=lm)

    class CapitalQA(Signature):
        """Answer with the capital city."""

        question: str = InputField()
        answer: str = OutputField()

    class Agent(Module):
        def __init__(self):
            super().__init__()
            self.react = ReAct(CapitalQA, tools=[Tool(capital_of)], max_iters=3)

        def forward(self, question):
            return self.react(question=question)

    devset = [
        Example(question=f"What is the capital of {country}?", answer=capital).with_inputs("question")
        for country, capital in CAPITALS.items()
    ]
    devset.append(Example(question="What is the capital of Narnia?", answer="Cair Paravel").with_inputs("question"))
    result = Evaluate(devset=devset, metric=answer_exact_match, num_threads=2, display_progress=False)(Agent())
    assert isinstance(result, EvaluationResult)
    assert result.score == 75.0  # Narnia's capital is no tool's: the tool raises, the agent answers "unknown"
    assert [prediction.answer for _, prediction, _ in result.results] == ["Paris", "Lima", "Tokyo", "unknown"]
