"""DSPy's ``dspy.dsp``: of DSPy's legacy package, the client of a ColBERTv2 server (``dsp.colbertv2.ColBERTv2``)
and the ``dotdict`` its passages are (``dsp.utils.dotdict``). DSPy's language-model helpers are not here: dsr's
live in ``dsr_core.lm`` and ``dsr_core.adapters``."""

from types import ModuleType

from .._submodules import submodule

__all__: list[str] = []


def __getattr__(name: str) -> ModuleType:
    return submodule(__name__, name)  # ``dsp.colbertv2`` without importing it first, as in DSPy
