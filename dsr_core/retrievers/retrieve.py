"""Retrieve: DSPy's ``dspy.Retrieve``, the retriever step of a program, asking the retriever in the settings.

``dsr.configure(rm=ColBERTv2(url))`` (or ``with dsr.context(rm=...)``) sets the retriever; a program holds
``self.retrieve = Retrieve(k=3)`` and calls ``self.retrieve(query).passages``. As in DSPy, each call asks
``rm(query, k=k, **kwargs)`` and returns ``Prediction(passages=[...])``, the passages' ``long_text``; here a
passage may also be a mapping with ``"long_text"`` or a plain string, so any callable returning texts serves as
``rm``. ``await retrieve.acall(query)`` uses the retriever's ``acall`` when it has one (ColBERTv2 does), and
otherwise runs it in a worker thread.

A Retrieve is a ``Parameter``, not a Module, as in DSPy: it shows in ``program.named_parameters()`` (not in
``named_predictors()``), and its state is ``{"k": k}`` (``dump_state``/``load_state``), the entry DSPy's layout
gives it in a saved program.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import settings as _settings
from ..callback import with_callbacks
from ..errors import DsrError, ProgramStateError
from ..modules.module import Parameter
from ..primitives import Prediction
from ..runtime import runtime


class RetrieverNotConfiguredError(DsrError, AssertionError):
    """``Retrieve`` was called with no retriever in the settings. An AssertionError, as DSPy's is."""


class Retrieve(Parameter):
    """DSPy's ``Retrieve(k=3, callbacks=None)``: ``retrieve(query, k=None, **kwargs)`` is
    ``Prediction(passages=[...])`` from the ``rm`` setting; ``callbacks`` see each call as a module call."""

    name = "Search"
    input_variable = "query"
    desc = "takes a search query and returns one or more potentially relevant passages from a corpus"

    def __init__(self, k: int = 3, callbacks: list[Any] | None = None) -> None:
        self.stage = random.randbytes(8).hex()
        self.k = k
        self.callbacks = list(callbacks or [])

    def reset(self) -> None:
        """Nothing to reset (a Retrieve learns nothing); an optimizer's ``reset_copy`` calls it."""

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        """``{"k": k}``, as DSPy saves it; ``json_mode`` is DSPy's ``Module.dump_state`` keyword, unused."""
        return {"k": self.k}

    def load_state(self, state: Mapping[str, Any]) -> Retrieve:
        """Load ``{"k": k}`` (DSPy's state); a ``k`` that is not a positive integer is a ProgramStateError."""
        if not isinstance(state, Mapping):
            raise ProgramStateError(f"Retrieve: state must be an object like {{'k': 3}}, got {type(state).__name__}")
        k = state.get("k", self.k)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ProgramStateError(f"Retrieve: saved k must be a positive integer, got {k!r}")
        self.k = k
        return self

    @with_callbacks
    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        return self.forward(*args, **kwargs)

    @with_callbacks
    async def acall(self, *args: Any, **kwargs: Any) -> Prediction:
        return await self.aforward(*args, **kwargs)

    def forward(self, query: str, k: int | None = None, **kwargs: Any) -> Prediction:
        rm = _retriever()
        return _prediction(rm(query, k=self._k(k), **kwargs), rm)

    async def aforward(self, query: str, k: int | None = None, **kwargs: Any) -> Prediction:
        rm = _retriever()
        acall = getattr(rm, "acall", None)
        if acall is not None and asyncio.iscoroutinefunction(acall):
            return _prediction(await acall(query, k=self._k(k), **kwargs), rm)
        call = functools.partial(rm, query, k=self._k(k), **kwargs)
        ctx = contextvars.copy_context()  # the settings (and callbacks) of this task, in the worker thread
        loop = asyncio.get_running_loop()
        return _prediction(await loop.run_in_executor(runtime().forward_pool(), ctx.run, call), rm)

    def _k(self, k: int | None) -> int:
        return k if k is not None else self.k

    def __repr__(self) -> str:
        return f"Retrieve(k={self.k})"


def _retriever() -> Any:
    rm = _settings.get("rm")
    if rm is None:  # DSPy tests truthiness; a retriever with a length could then be "not loaded"
        raise RetrieverNotConfiguredError(
            "No RM is loaded: Retrieve asks the retriever in the settings; set one with "
            "dsr.configure(rm=ColBERTv2(url=...)) or `with dsr.context(rm=...)`"
        )
    return rm


def _prediction(passages: Any, rm: Any) -> Prediction:
    """DSPy's: one passage becomes a list of one; each passage's ``long_text`` (a mapping's or a string itself)."""
    if not isinstance(passages, Iterable) or isinstance(passages, (str, Mapping)):
        passages = [passages]
    return Prediction(passages=[_long_text(passage, rm) for passage in passages])


def _long_text(passage: Any, rm: Any) -> str:
    if isinstance(passage, str):
        return passage
    if isinstance(passage, Mapping) and "long_text" in passage:
        return passage["long_text"]  # type: ignore[no-any-return]
    text = getattr(passage, "long_text", None)
    if text is None:
        raise TypeError(
            f"Retrieve: the retriever {rm!r} returned a passage without 'long_text' ({type(passage).__name__}: "
            f"{passage!r}); it must return strings or passages with long_text, as ColBERTv2's are"
        )
    return text  # type: ignore[no-any-return]


def single_query_passage(passages: Sequence[Mapping[str, Any]]) -> Prediction:
    """DSPy's helper: passages' keys as lists in one Prediction, ``long_text`` renamed ``passages``."""
    passages_dict: dict[str, list[Any]] = {key: [] for key in passages[0]}
    for docs in passages:
        for key, value in docs.items():
            passages_dict[key].append(value)
    if "long_text" in passages_dict:
        passages_dict["passages"] = passages_dict.pop("long_text")
    return Prediction(**passages_dict)


__all__ = ["Retrieve", "RetrieverNotConfiguredError", "single_query_passage"]
