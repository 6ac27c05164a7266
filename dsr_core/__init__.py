"""dsr_core: declarative LM programs (signatures, modules, adapters), a fast async LM client and evaluator.

``import dsr_core as dsr`` gives DSPy's names. Heavy dependencies (openai, pyarrow, datasets, rich) are
imported on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import Any

from .adapters import Adapter, ChatAdapter, JSONAdapter
from .cache import Cache
from .callback import BaseCallback, with_callbacks
from .errors import (
    AdapterParseError,
    ContextWindowExceededError,
    DataError,
    DsrError,
    LMAuthenticationError,
    LMConfigError,
    LMConnectionError,
    LMError,
    LMNotFoundError,
    LMRateLimitError,
    LMTimeoutError,
    ProgramStateError,
    SignatureError,
)
from .evaluate import Evaluate, EvaluationAborted, EvaluationResult, EvaluationRow
from .lm import LM, BaseLM, inspect_history
from .metrics import (
    EM,
    F1,
    CompleteAndGrounded,
    ExactMatch,
    LLMJudge,
    SemanticF1,
    answer_exact_match,
    answer_passage_match,
    exact_match,
    f1,
    normalize_text,
)
from .modules import (
    BestOfN,
    ChainOfThought,
    Module,
    MultiChainComparison,
    Parallel,
    Parameter,
    Predict,
    ReAct,
    Refine,
    majority,
)
from .primitives import Completions, Example, Prediction, Usage
from .settings import configure, context, settings
from .signatures import InputField, OutputField, Signature, ensure_signature, infer_prefix, make_signature
from .tracking import trace, track_usage

__version__ = "0.1.0"

# imported on first use (optuna and the optimizers' modules are not needed to run a program; the custom types'
# pydantic models cost more to build than the rest of the package)
_LAZY = {
    **{
        name: ".adapters"
        for name in (
            "Audio",
            "Code",
            "File",
            "History",
            "Image",
            "Reasoning",
            "Tool",
            "ToolCalls",
            "Type",
            "TwoStepAdapter",
            "XMLAdapter",
        )
    },
    **{name: ".graph" for name in ("GraphProgram", "ProgramGraph", "trace_program")},
    "DataLoader": ".data",
    "load_examples": ".data",
    **{
        name: ".optimizers"
        for name in (
            "LabeledFewShot",
            "BootstrapFewShot",
            "BootstrapFewShotWithRandomSearch",
            "BootstrapRS",
            "COPRO",
            "Ensemble",
            "MIPROv2",
            "GEPA",
            "SIMBA",
            "StructuralOptimizer",
            "KNNFewShot",
            "BootstrapFinetune",
            "BetterTogether",
            "bootstrap_trace_data",
        )
    },
    "Provider": ".clients",
    "TrainingJob": ".clients",
    "SignatureMeta": ".signatures",
    "Embedder": ".lm.embedding",
    "KNN": ".modules.knn",
    "streamify": ".streaming",
    "Embeddings": ".retrievers",
    "Retrieve": ".retrievers",
    "ColBERTv2": ".dsp.colbertv2",
    "ProgramOfThought": ".modules.program_of_thought",
    "asyncify": ".utils.asyncify",
    "syncify": ".utils.syncify",
    "CodeAct": ".modules.code_act",
    **{
        name: ".interpreter"
        for name in (
            "PythonInterpreter",
            "LocalInterpreter",
            "CodeInterpreter",
            "CodeInterpreterError",
            "CodeExecutionError",
            "FinalOutput",
            "resolve_interpreter_factory",
        )
    },
    "EmbeddingsWithScores": ".retrievers",
}

# DSPy 3.4.1's top-level names dsr does not have: (why, what to use instead), for the AttributeError
_CODE = ("dsr's interpreters pass JSON values in and out, no custom sandbox types", "JSON-compatible variables")
_LOGGING = ("dsr logs with the standard logging module and has no LiteLLM", 'logging.getLogger("dsr_core")')
_LM_ERROR = ("dsr's LM errors are fewer", "LMError (or LMRateLimitError, LMTimeoutError, LMConnectionError)")
_MISSING: dict[str, tuple[str, str]] = {
    "AvatarOptimizer": ("dsr has no Avatar agent", "GEPA or SIMBA on a ReAct program"),
    "BootstrapFewShotWithOptuna": ("the random search covers it", "BootstrapFewShotWithRandomSearch or MIPROv2"),
    "InferRules": ("no rule-inducing optimizer", "COPRO, MIPROv2 or GEPA, which rewrite instructions"),
    "SandboxSerializable": _CODE,
    "RLM": ("dsr has no recursive-LM module", "ProgramOfThought or CodeAct"),
    "ReActV2": ("dsr has one ReAct", "ReAct"),
    "Flex": ("DSPy's experimental module is not ported", "Predict or ChainOfThought"),
    "ToolCallResults": ("tool results are kept in ReAct's trajectory", "ToolCalls, or ReAct's trajectory"),
    "load": ("dsr's loader has another name", "dsr.load_program(path)"),
    "load_settings": ("settings are not saved to files", "dsr.configure(...) or dsr.context(...)"),
    "configure_cache": ("the cache is set through the settings", "dsr.configure(cache=...) or dsr.Cache"),
    "DSPyError": ("dsr's base error has dsr's name", "DsrError"),
    "BaseModule": ("dsr has one module base class", "Module"),
    **dict.fromkeys(("OldField", "OldInputField", "OldOutputField"), ("DSPy 2's fields", "InputField/OutputField")),
    "LMAuthError": ("dsr's name differs", "LMAuthenticationError"),
    "LMConfigurationError": ("dsr's name differs", "LMConfigError"),
    "LMTransportError": ("dsr's name differs", "LMConnectionError"),
    **dict.fromkeys(
        (
            "LMBillingError",
            "LMCollectionLimitError",
            "LMInvalidRequestError",
            "LMLockTimeoutError",
            "LMNotConfiguredError",
            "LMProviderError",
            "LMServerError",
            "LMStreamAssemblyError",
            "LMUnexpectedError",
            "LMUnsupportedFeatureError",
            "LMUnsupportedModelError",
        ),
        _LM_ERROR,
    ),
    "is_retryable_lm_error": ("dsr's LM retries 429s, 5xx and timeouts itself", "catch LMError after the retries"),
    **dict.fromkeys(
        ("configure_dspy_loggers", "enable_logging", "disable_logging", "enable_litellm_logging"), _LOGGING
    ),
    "disable_litellm_logging": _LOGGING,
    "lm15": ("dsr has its own LM client", "dsr_core.lm"),
    "propose": ("dsr's proposers live elsewhere", "dsr_core.optimizers.proposals"),
    "threading": ("dsr runs calls on asyncio, not threads", "dsr.Parallel or module.batch"),
}


# DSPy's subpackages that programs reach as attributes (``dspy.teleprompt.MIPROv2``, ``dspy.predict.ReAct``)
_SUBMODULES = {
    "adapters",
    "clients",
    "dsp",
    "evaluate",
    "graph",
    "predict",
    "primitives",
    "retrievers",
    "signatures",
    "streaming",
    "teleprompt",
    "utils",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _MISSING:
        why, instead = _MISSING[name]
        raise AttributeError(f"dsr does not have DSPy's {name!r}: {why} (instead: {instead})")
    raise AttributeError(f"module 'dsr_core' has no attribute {name!r}")


def load_program(source: str, program: Module | None = None) -> Module:
    """Load a saved program (dsr's or DSPy 3.x's JSON) from a path, an fsspec URL or ``models:/name@alias``.

    Into ``program`` when given; otherwise into a new instance of the class the file names.
    """
    from .state import load_program as _load

    return _load(source, program)


__all__ = [
    "Adapter",
    "AdapterParseError",
    "Audio",
    "BaseCallback",
    "BaseLM",
    "BestOfN",
    "BetterTogether",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "BootstrapRS",
    "COPRO",
    "Cache",
    "ChainOfThought",
    "ChatAdapter",
    "Code",
    "CodeAct",
    "CodeExecutionError",
    "CodeInterpreter",
    "CodeInterpreterError",
    "ColBERTv2",
    "CompleteAndGrounded",
    "Completions",
    "ContextWindowExceededError",
    "DataError",
    "DataLoader",
    "DsrError",
    "EM",
    "Embedder",
    "Embeddings",
    "EmbeddingsWithScores",
    "Ensemble",
    "Evaluate",
    "EvaluationAborted",
    "EvaluationResult",
    "EvaluationRow",
    "ExactMatch",
    "Example",
    "F1",
    "File",
    "FinalOutput",
    "GraphProgram",
    "History",
    "Image",
    "InputField",
    "JSONAdapter",
    "KNN",
    "KNNFewShot",
    "LLMJudge",
    "LM",
    "LMAuthenticationError",
    "LMConfigError",
    "LMConnectionError",
    "LMError",
    "LMNotFoundError",
    "LMRateLimitError",
    "LMTimeoutError",
    "LabeledFewShot",
    "LocalInterpreter",
    "MIPROv2",
    "Module",
    "MultiChainComparison",
    "OutputField",
    "Parallel",
    "Parameter",
    "Predict",
    "Prediction",
    "ProgramGraph",
    "ProgramOfThought",
    "ProgramStateError",
    "Provider",
    "PythonInterpreter",
    "ReAct",
    "Reasoning",
    "Refine",
    "Retrieve",
    "SemanticF1",
    "Signature",
    "SignatureError",
    "StructuralOptimizer",
    "Tool",
    "ToolCalls",
    "TrainingJob",
    "TwoStepAdapter",
    "Type",
    "Usage",
    "XMLAdapter",
    "answer_exact_match",
    "asyncify",
    "answer_passage_match",
    "bootstrap_trace_data",
    "configure",
    "context",
    "ensure_signature",
    "exact_match",
    "f1",
    "infer_prefix",
    "inspect_history",
    "load_examples",
    "load_program",
    "majority",
    "make_signature",
    "normalize_text",
    "resolve_interpreter_factory",
    "retrievers",
    "settings",
    "streamify",
    "streaming",
    "syncify",
    "trace",
    "trace_program",
    "track_usage",
    "with_callbacks",
]
