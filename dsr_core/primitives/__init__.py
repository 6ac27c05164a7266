"""Example (a data row) and Prediction (a module's output), with the usage that produced it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._submodules import submodule


class Example:
    """A dict-like record whose keys are also attributes. ``with_inputs`` marks which keys are inputs."""

    __slots__ = ("_store", "_input_keys")

    def __init__(self, base: Example | dict[str, Any] | None = None, **fields: Any) -> None:
        store: dict[str, Any] = {}
        input_keys: frozenset[str] | None = None
        if isinstance(base, Example):
            store.update(base._store)
            input_keys = base._input_keys
        elif base is not None:
            store.update(base)
        store.update(fields)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_input_keys", input_keys)

    # -- mapping protocol ------------------------------------------------------------------------------------
    def __getattr__(self, key: str) -> Any:
        try:
            return self._store[key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {key!r}; fields: {list(self._store)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        """The fields, as DSPy counts them: without its bookkeeping keys (``dspy_uuid``, ``dspy_split``, ...)."""
        return sum(1 for key in self._store if not key.startswith("dspy_"))

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._store == other._store and self._input_keys == other._input_keys

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._store.items())))

    def __repr__(self) -> str:
        """DSPy's: ``Example({'question': 'q'}) (input_keys={'question'})``, without its bookkeeping keys."""
        shown = {k: v for k, v in self._store.items() if not k.startswith("dspy_")}
        keys = None if self._input_keys is None else set(self._input_keys)
        return f"{type(self).__name__}({shown!r}) (input_keys={keys!r})"

    def __str__(self) -> str:
        return repr(self)  # a subclass's own repr (Prediction's) too

    def keys(self, include_dspy: bool = False) -> Iterable[str]:
        return self._fields(include_dspy).keys()

    def values(self, include_dspy: bool = False) -> Iterable[Any]:
        return self._fields(include_dspy).values()

    def items(self, include_dspy: bool = False) -> Iterable[tuple[str, Any]]:
        return self._fields(include_dspy).items()

    def _fields(self, include_dspy: bool) -> dict[str, Any]:
        """The fields ``keys``/``values``/``items`` show: without DSPy's bookkeeping keys (``dspy_uuid``, ...)
        unless asked for, as DSPy's. Views, so set operations on ``keys()`` work."""
        store = self._store
        if include_dspy or not any(key.startswith("dspy_") for key in store):
            return store
        return {key: value for key, value in store.items() if not key.startswith("dspy_")}

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """The fields as they are (a shallow copy): what a program is called with keeps its types."""
        return dict(self._store)

    def toDict(self) -> dict[str, Any]:  # noqa: N802 - DSPy's name
        """DSPy's: the fields with nested Examples and pydantic values (``History``, ...) as plain dicts and
        lists, for JSON."""
        return {key: _plain(value) for key, value in self._store.items()}

    # -- inputs and labels -----------------------------------------------------------------------------------
    @property
    def input_keys(self) -> frozenset[str] | None:
        return self._input_keys

    def with_inputs(self, *keys: str) -> Example:
        missing = [k for k in keys if k not in self._store]
        if missing:
            raise KeyError(f"with_inputs: no field(s) {missing} in example; fields: {list(self._store)}")
        copy = self.copy()
        object.__setattr__(copy, "_input_keys", frozenset(keys))
        return copy

    def _require_inputs(self) -> frozenset[str]:
        if self._input_keys is None:
            raise ValueError("this Example has no input keys; call .with_inputs('field', ...) first")
        return self._input_keys

    def inputs(self) -> Example:
        keys = self._require_inputs()
        result = Example({k: v for k, v in self._store.items() if k in keys})
        object.__setattr__(result, "_input_keys", keys)
        return result

    def labels(self) -> Example:
        keys = self._require_inputs()
        return Example({k: v for k, v in self._store.items() if k not in keys})

    def copy(self, **updates: Any) -> Example:
        result = type(self).__new__(type(self))
        object.__setattr__(result, "_store", {**self._store, **updates})
        object.__setattr__(result, "_input_keys", self._input_keys)
        return result

    def without(self, *keys: str) -> Example:
        result = self.copy()
        for key in keys:
            result._store.pop(key, None)
        return result

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "input_keys": self._input_keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_store", state["store"])
        object.__setattr__(self, "_input_keys", state["input_keys"])


def _plain(value: Any) -> Any:
    if isinstance(value, Example):
        return value.toDict()
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass
class Usage:
    """Tokens and calls behind a result. Cached calls are counted apart and are not spend.

    ``cost`` is in US dollars, from the prices of the LMs that made the calls (costs.py); ``unpriced_calls``
    counts calls made with an LM that has none, so a total that includes them is unknown, not low.
    ``cached_prompt_tokens`` are prompt tokens the provider served from its own prompt cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    lm_calls: int = 0
    cached_calls: int = 0
    cost: float = 0.0
    unpriced_calls: int = 0
    cached_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cached(self) -> bool:
        """True when every LM call behind this result was served from the cache."""
        return self.lm_calls > 0 and self.cached_calls == self.lm_calls

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.lm_calls += other.lm_calls
        self.cached_calls += other.cached_calls
        self.cost += other.cost
        self.unpriced_calls += other.unpriced_calls
        self.cached_prompt_tokens += other.cached_prompt_tokens

    def __add__(self, other: Usage) -> Usage:
        total = Usage(**vars(self))
        total.add(other)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "total_tokens": self.total_tokens}  # vars, not asdict: this is on the request path

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Usage:
        """The inverse of ``to_dict`` (its ``total_tokens`` is derived, so it is ignored); missing keys are 0."""
        return cls(**{k: v for k, v in values.items() if k != "total_tokens"})


class Completions:
    """The n completions of one call (DSPy's ``Completions``).

    ``completions[i]`` is the i-th as a Prediction, ``completions.answer`` (or ``completions["answer"]``) the
    list of every completion's answer, ``len(completions)`` how many there are. Iterating yields Predictions.
    """

    __slots__ = ("_rows", "signature")

    def __init__(self, list_or_dict: Any, signature: Any = None) -> None:
        if isinstance(list_or_dict, Completions):
            rows = [dict(r) for r in list_or_dict._rows]
        elif isinstance(list_or_dict, Mapping):
            columns = {k: list(v) for k, v in list_or_dict.items()}
            lengths = {len(v) for v in columns.values()}
            if len(lengths) > 1:
                raise ValueError(f"every field needs the same number of completions, got lengths {sorted(lengths)}")
            count = lengths.pop() if lengths else 0
            rows = [{k: v[i] for k, v in columns.items()} for i in range(count)]
        else:
            rows = [dict(r) for r in list_or_dict]
        object.__setattr__(self, "_rows", rows)
        object.__setattr__(self, "signature", signature)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Prediction]:
        return (Prediction(row) for row in self._rows)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            if key < -len(self._rows) or key >= len(self._rows):
                raise IndexError("Index out of range")
            return Prediction(self._rows[key])
        if not any(key in row for row in self._rows):
            raise KeyError(key)
        return [row.get(key) for row in self._rows]

    def __getattr__(self, name: str) -> list[Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"Completions has no field {name!r}") from None

    def __contains__(self, key: object) -> bool:
        return any(key in row for row in self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Completions):
            return self._rows == other._rows
        if isinstance(other, list):
            return self._rows == [dict(o) for o in other]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def items(self) -> Iterable[tuple[str, list[Any]]]:
        keys = list(dict.fromkeys(k for row in self._rows for k in row))
        return [(k, [row.get(k) for row in self._rows]) for k in keys]

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._rows]

    def __getstate__(self) -> dict[str, Any]:
        return {"rows": self._rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_rows", state["rows"])
        object.__setattr__(self, "signature", None)

    def __repr__(self) -> str:
        return f"Completions({self._rows!r})"


class Prediction(Example):
    """A module's output: fields as attributes, ``completions`` (all n of them), and ``usage``.

    As in DSPy, a prediction with a ``score`` works as a number: ``float(pred)``, ``pred + 1``, ``pred < 0.5``.
    """

    __slots__ = ("completions", "usage", "_lm_usage")

    def __init__(self, base: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(base, **fields)
        object.__setattr__(self, "completions", Completions([dict(self._store)]))
        object.__setattr__(self, "usage", Usage())
        object.__setattr__(self, "_lm_usage", None)

    @classmethod
    def from_completions(cls, list_or_dict: Any, signature: Any = None, usage: Usage | None = None) -> Prediction:
        """The first completion's fields, with every completion in ``completions``.

        ``signature`` may be omitted; a ``Usage`` in its place is taken as the usage (dsr's older form).
        """
        if isinstance(signature, Usage) and usage is None:
            signature, usage = None, signature
        completions = Completions(list_or_dict, signature)
        pred = cls(completions._rows[0] if len(completions) else {})
        object.__setattr__(pred, "completions", completions)
        object.__setattr__(pred, "usage", usage or Usage())
        return pred

    def get_lm_usage(self) -> dict[str, dict[str, Any]] | None:
        """DSPy's: ``{model: {"prompt_tokens": ..., ...}}`` of the module call that returned this prediction,
        when ``track_usage`` is on; None otherwise. dsr's flat totals are always in ``usage``."""
        return self._lm_usage

    def set_lm_usage(self, value: dict[str, dict[str, Any]] | Usage | None) -> None:
        if isinstance(value, Usage):  # dsr's older form: the flat totals
            object.__setattr__(self, "usage", value)
        else:
            object.__setattr__(self, "_lm_usage", value)

    def __setattr__(self, key: str, value: Any) -> None:
        if key in ("completions", "usage"):
            object.__setattr__(self, key, value)
        else:
            self._store[key] = value

    def copy(self, **updates: Any) -> Prediction:
        result = super().copy(**updates)
        object.__setattr__(result, "completions", Completions(self.completions))
        object.__setattr__(result, "usage", Usage(**vars(self.usage)))
        object.__setattr__(result, "_lm_usage", self._lm_usage)
        return result  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        state = {**super().__getstate__(), "completions": self.completions.to_list(), "usage": dict(vars(self.usage))}
        if self._lm_usage is not None:
            state["lm_usage"] = self._lm_usage
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        object.__setattr__(self, "completions", Completions(state.get("completions", [dict(self._store)])))
        object.__setattr__(self, "usage", Usage(**state.get("usage", {})))
        object.__setattr__(self, "_lm_usage", state.get("lm_usage"))

    def __repr__(self) -> str:
        return f"Prediction({self._store!r})"

    # -- a prediction with a score is a number (DSPy's arithmetic on ``score``) --------------------------------
    def _score(self) -> float:
        if "score" not in self._store:
            raise ValueError("Prediction object does not have a 'score' field to convert to float.")
        return float(self._store["score"])

    def __float__(self) -> float:
        return self._score()

    def __add__(self, other: Any) -> float:
        return self._score() + float(other)

    def __radd__(self, other: Any) -> float:
        return float(other) + self._score()

    def __truediv__(self, other: Any) -> float:
        return self._score() / float(other)

    def __rtruediv__(self, other: Any) -> float:
        return float(other) / self._score()

    def __lt__(self, other: Any) -> bool:
        return self._score() < float(other)

    def __le__(self, other: Any) -> bool:
        return self._score() <= float(other)

    def __gt__(self, other: Any) -> bool:
        return self._score() > float(other)

    def __ge__(self, other: Any) -> bool:
        return self._score() >= float(other)


def __getattr__(name: str) -> Any:
    import dsr_core

    if dsr_core._LAZY.get(name) == ".interpreter":  # DSPy's interpreter names, where the package lists them
        return getattr(dsr_core, name)
    return submodule(__name__, name)  # ``primitives.example`` without importing it first, as in DSPy
