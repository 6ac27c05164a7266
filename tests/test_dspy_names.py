"""DSPy 3.4.1's names and keywords: the ones dsr has behave as DSPy's; the ones it lacks say so."""

from __future__ import annotations

import json

import pytest

import dsr_core as dsr


def test_chain_of_thought_takes_dspys_rationale_keywords(server, lm):
    server.responder = lambda r: r.reply(reasoning="3", answer="4")
    cot = dsr.ChainOfThought("question -> answer", rationale_field_type=int, lm=lm)
    assert cot.signature.fields["reasoning"].annotation is int
    pred = cot(question="2+2?")
    assert pred.reasoning == 3 and pred.answer == "4"
    request = server.requests[-1]
    assert "rationale_field_type" not in request and "rationale_type" not in request
    system, user = (m["content"] for m in request["messages"])
    assert "1. `reasoning` (int)" in system and "2. `answer` (str)" in system
    assert "starting with the field `[[ ## reasoning ## ]]` (must be formatted as a valid Python int)" in user

    field = dsr.OutputField(desc="step by step", prefix="Thoughts:")
    cot = dsr.ChainOfThought("question -> answer", field, rationale_field_type=int, lm=lm)  # positional, as DSPy
    assert cot.signature.fields["reasoning"].annotation is str  # the field's type wins over rationale_field_type
    cot(question="q")
    request = server.requests[-1]
    assert "rationale_field" not in request
    assert "step by step" in json.dumps(request["messages"])
    assert dsr.ChainOfThought("q -> a", rationale_type=int).signature.fields["reasoning"].annotation is int


# sorted(n for n in dir(dspy) if not n.startswith("_")) in DSPy 3.4.1
DSPY_3_4_1_DIR = """
Adapter Audio AvatarOptimizer BaseCallback BaseLM BaseModule BestOfN BetterTogether BootstrapFewShot
BootstrapFewShotWithOptuna BootstrapFewShotWithRandomSearch BootstrapFinetune BootstrapRS COPRO ChainOfThought
ChatAdapter Code CodeAct CodeExecutionError CodeInterpreter CodeInterpreterError ColBERTv2 Completions DSPyError
Embedder Embeddings EmbeddingsWithScores Ensemble Evaluate Example File FinalOutput Flex GEPA History Image
InferRules InputField JSONAdapter KNN KNNFewShot LM LMAuthError LMBillingError LMCollectionLimitError
LMConfigurationError LMInvalidRequestError LMLockTimeoutError LMNotConfiguredError LMProviderError LMServerError
LMStreamAssemblyError LMTransportError LMUnexpectedError LMUnsupportedFeatureError LMUnsupportedModelError
LabeledFewShot LocalInterpreter MIPROv2 Module MultiChainComparison OldField OldInputField OldOutputField
OutputField Parallel Prediction Predict ProgramOfThought Provider PythonInterpreter RLM ReAct ReActV2 Reasoning
Refine Retrieve SIMBA SandboxSerializable Signature SignatureMeta Tool ToolCallResults ToolCalls TrainingJob
TwoStepAdapter Type XMLAdapter adapters asyncify bootstrap_trace_data clients configure configure_cache
configure_dspy_loggers context disable_litellm_logging disable_logging dsp enable_litellm_logging enable_logging
ensure_signature evaluate inspect_history is_retryable_lm_error lm15 load load_settings majority predict primitives
propose retrievers settings signatures streamify streaming syncify teleprompt threading track_usage utils
""".split()


def test_every_dspy_name_exists_or_says_why_not_and_what_to_use():
    missing = {}
    for name in DSPY_3_4_1_DIR:
        try:
            getattr(dsr, name)
        except AttributeError as exc:
            missing[name] = str(exc)
    assert {"RLM", "SandboxSerializable", "InferRules", "load"} <= set(missing)
    assert not {"ColBERTv2", "Retrieve", "dsp"} & set(missing)
    assert not {"BootstrapFinetune", "BetterTogether", "bootstrap_trace_data", "Provider", "TrainingJob"} & set(missing)
    code = {"ProgramOfThought", "CodeAct", "PythonInterpreter", "LocalInterpreter", "CodeInterpreter"}
    assert not (code | {"CodeInterpreterError", "CodeExecutionError", "FinalOutput"}) & set(missing)
    assert not {"XMLAdapter", "TwoStepAdapter", "streamify", "streaming"} & set(missing)
    assert not {"Embedder", "KNN", "KNNFewShot", "Embeddings", "EmbeddingsWithScores", "retrievers"} & set(missing)
    for name, message in missing.items():
        assert message.startswith(f"dsr does not have DSPy's {name!r}: "), message
        assert " (instead: " in message and message.endswith(")"), message
    with pytest.raises(AttributeError, match="module 'dsr_core' has no attribute 'no_such_name'"):
        dsr.no_such_name  # noqa: B018


def test_bootstrap_rs_is_dspys_alias():
    from dsr_core.optimizers import BootstrapRS

    assert dsr.BootstrapRS is BootstrapRS is dsr.BootstrapFewShotWithRandomSearch


class Constant(dsr.Module):
    def __init__(self, value):
        self.value = value

    def forward(self, question):
        return dsr.Prediction(answer=f"{self.value}")


async def test_ensemble_runs_every_program_and_reduces(server, lm):
    server.responder = lambda r: r.reply(answer="4")
    second = dsr.Predict("question -> answer", lm=lm, temperature=0.5)  # another request, not a cache hit
    programs = [dsr.Predict("question -> answer", lm=lm), Constant("5"), second]
    voted = dsr.Ensemble(reduce_fn=dsr.majority).compile(programs)
    assert voted(question="2+2?").answer == "4"
    assert (await voted.acall(question="1+3?")).answer == "4"
    assert len(server.requests) == 4
    outputs = dsr.Ensemble().compile(programs)(question="q")
    assert [o.answer for o in outputs] == ["4", "5", "4"]
    sampled = await dsr.Ensemble(size=1).compile(programs).acall(question="q")
    assert len(sampled) == 1
    with pytest.raises(NotImplementedError, match="deterministic"):
        dsr.Ensemble(deterministic=True)


def metric(example, prediction, trace=None):
    return 1.0


# DSPy 3.4.1's __init__ and compile keywords (inspect.signature in DSPy's venv) with DSPy's defaults; compile's
# student, trainset, teacher and valset are left out (every dsr compile takes them)
DSPY_OPTIMIZER_KEYWORDS = {
    "COPRO": (
        {"prompt_model": None, "metric": metric, "breadth": 10, "depth": 3, "init_temperature": 1.4},
        {"eval_kwargs": None},
    ),
    "BootstrapFewShot": (
        {
            "metric": metric,
            "metric_threshold": None,
            "teacher_settings": None,
            "max_bootstrapped_demos": 4,
            "max_labeled_demos": 16,
            "max_rounds": 1,
            "max_errors": None,
        },
        {},
    ),
    "BootstrapFewShotWithRandomSearch": (
        {
            "metric": metric,
            "teacher_settings": None,
            "max_bootstrapped_demos": 4,
            "max_labeled_demos": 16,
            "max_rounds": 1,
            "num_candidate_programs": 16,
            "num_threads": None,
            "max_errors": None,
            "stop_at_score": None,
            "metric_threshold": None,
        },
        {"restrict": None, "labeled_sample": True},
    ),
    "LabeledFewShot": ({"k": 16}, {"sample": True}),
    "MIPROv2": (
        {
            "metric": metric,
            "prompt_model": None,
            "task_model": None,
            "teacher_settings": None,
            "max_bootstrapped_demos": 4,
            "max_labeled_demos": 4,
            "auto": "light",
            "num_candidates": None,
            "num_threads": None,
            "max_errors": None,
            "seed": 9,
            "init_temperature": 1.0,
            "verbose": False,
            "track_stats": True,
            "log_dir": None,
            "metric_threshold": None,
        },
        {
            "num_trials": None,
            "max_bootstrapped_demos": None,
            "max_labeled_demos": None,
            "seed": None,
            "minibatch": True,
            "minibatch_size": 35,
            "minibatch_full_eval_steps": 5,
            "program_aware_proposer": True,
            "data_aware_proposer": True,
            "view_data_batch_size": 10,
            "tip_aware_proposer": True,
            "fewshot_aware_proposer": True,
            "requires_permission_to_run": None,
            "provide_traceback": None,
        },
    ),
    "SIMBA": (
        {
            "metric": metric,
            "bsize": 32,
            "num_candidates": 6,
            "max_steps": 8,
            "max_demos": 4,
            "prompt_model": None,
            "teacher_settings": None,
            "demo_input_field_maxlen": 100000,
            "num_threads": None,
            "temperature_for_sampling": 0.2,
            "temperature_for_candidates": 0.2,
        },
        {"seed": 0},
    ),
}


@pytest.mark.parametrize("name", sorted(DSPY_OPTIMIZER_KEYWORDS))
def test_optimizers_take_every_dspy_keyword(name):
    init, compile_options = DSPY_OPTIMIZER_KEYWORDS[name]
    import inspect

    optimizer = getattr(dsr, name)(**init)
    named = inspect.signature(type(optimizer).compile).parameters
    # a keyword compile() does not name goes to configured(), which applies DSPy's compile keywords
    optimizer.configured(**{k: v for k, v in compile_options.items() if k not in named})


def test_copro_takes_dspys_extra_keywords_as_dspy_does():
    dsr.COPRO(metric=metric, breadth=2, depth=1, anything="ignored", num_threads=4)
