"""dsr_core: declarative LM programs (signatures, modules, adapters), a fast async LM client and evaluator.

``import dsr_core as dsr`` gives DSPy's names. Heavy dependencies (openai, pyarrow, datasets, rich) are
imported on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import Any

from .adapters import Adapter, ChatAdapter, JSONAdapter
from .cache import Cache
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
from .lm import LM, inspect_history
from .metrics import F1, ExactMatch, LLMJudge, answer_exact_match, exact_match, f1, normalize_text
from .modules import ChainOfThought, Module, Predict
from .primitives import Example, Prediction, Usage
from .settings import configure, context, settings
from .signatures import InputField, OutputField, Signature, make_signature
from .tracking import trace, track_usage

__version__ = "0.1.0"

# imported on first use (optuna and the optimizers' modules are not needed to run a program)
_LAZY = {
    "DataLoader": ".data",
    "load_examples": ".data",
    **{
        name: ".optimizers"
        for name in ("LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "COPRO", "MIPROv2")
    },
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dsr_core' has no attribute {name!r}")


def load_program(source: str, program: Module | None = None) -> Module:
    """Load a saved program (dsr's or DSPy 3.x's JSON) from a path, an fsspec URL or ``models:/name@alias``.

    Into ``program`` when given; otherwise into a new instance of the class the file names.
    """
    from .state import load_program as _load

    return _load(source, program)


__all__ = [
    "COPRO",
    "LM",
    "Adapter",
    "AdapterParseError",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "LabeledFewShot",
    "MIPROv2",
    "Cache",
    "ChainOfThought",
    "ChatAdapter",
    "ContextWindowExceededError",
    "DataError",
    "DataLoader",
    "DsrError",
    "Evaluate",
    "EvaluationAborted",
    "EvaluationResult",
    "EvaluationRow",
    "ExactMatch",
    "Example",
    "F1",
    "InputField",
    "JSONAdapter",
    "LLMJudge",
    "LMAuthenticationError",
    "LMConnectionError",
    "LMError",
    "LMNotFoundError",
    "LMRateLimitError",
    "LMTimeoutError",
    "Module",
    "OutputField",
    "Predict",
    "Prediction",
    "ProgramStateError",
    "Signature",
    "SignatureError",
    "Usage",
    "answer_exact_match",
    "configure",
    "context",
    "exact_match",
    "f1",
    "inspect_history",
    "load_examples",
    "load_program",
    "make_signature",
    "normalize_text",
    "settings",
    "trace",
    "track_usage",
]
