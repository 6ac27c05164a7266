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
    **{name: ".adapters" for name in ("Code", "History", "Image", "Reasoning", "Tool", "ToolCalls", "Type")},
    **{name: ".graph" for name in ("GraphProgram", "ProgramGraph", "trace_program")},
    "DataLoader": ".data",
    "load_examples": ".data",
    **{
        name: ".optimizers"
        for name in (
            "LabeledFewShot",
            "BootstrapFewShot",
            "BootstrapFewShotWithRandomSearch",
            "COPRO",
            "MIPROv2",
            "GEPA",
            "SIMBA",
            "StructuralOptimizer",
        )
    },
}


# DSPy's subpackages that programs reach as attributes (``dspy.teleprompt.MIPROv2``, ``dspy.predict.ReAct``)
_SUBMODULES = {"adapters", "evaluate", "graph", "predict", "primitives", "signatures", "teleprompt", "utils"}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
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
    "BaseCallback",
    "BaseLM",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "COPRO",
    "Cache",
    "ChainOfThought",
    "ChatAdapter",
    "Code",
    "CompleteAndGrounded",
    "Completions",
    "ContextWindowExceededError",
    "DataError",
    "DataLoader",
    "DsrError",
    "EM",
    "Evaluate",
    "EvaluationAborted",
    "EvaluationResult",
    "EvaluationRow",
    "ExactMatch",
    "Example",
    "F1",
    "GraphProgram",
    "History",
    "Image",
    "InputField",
    "JSONAdapter",
    "LLMJudge",
    "LM",
    "LMAuthenticationError",
    "LMConnectionError",
    "LMError",
    "LMNotFoundError",
    "LMRateLimitError",
    "LMTimeoutError",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "MultiChainComparison",
    "OutputField",
    "Parallel",
    "Parameter",
    "Predict",
    "Prediction",
    "ProgramGraph",
    "ProgramStateError",
    "ReAct",
    "Reasoning",
    "Refine",
    "SemanticF1",
    "Signature",
    "SignatureError",
    "StructuralOptimizer",
    "Tool",
    "ToolCalls",
    "Type",
    "Usage",
    "answer_exact_match",
    "answer_passage_match",
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
    "settings",
    "trace",
    "trace_program",
    "track_usage",
    "with_callbacks",
]
