"""Example (a data row) and Prediction (a module's output), with the usage that produced it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any


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
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._store == other._store and self._input_keys == other._input_keys

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._store.items())))

    def __repr__(self) -> str:
        keys = f", input_keys={sorted(self._input_keys)}" if self._input_keys is not None else ""
        return f"{type(self).__name__}({self._store!r}{keys})"

    def keys(self) -> Iterable[str]:
        return self._store.keys()

    def values(self) -> Iterable[Any]:
        return self._store.values()

    def items(self) -> Iterable[tuple[str, Any]]:
        return self._store.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._store)

    toDict = to_dict  # noqa: N815 - DSPy's name

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


@dataclass
class Usage:
    """Tokens and calls behind a result. Cached calls are counted apart and are not spend."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    lm_calls: int = 0
    cached_calls: int = 0

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

    def __add__(self, other: Usage) -> Usage:
        total = Usage(**asdict(self))
        total.add(other)
        return total

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_tokens": self.total_tokens}


class Prediction(Example):
    """A module's output: fields as attributes, ``completions`` when n > 1, and ``usage``."""

    __slots__ = ("completions", "usage")

    def __init__(self, base: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(base, **fields)
        object.__setattr__(self, "completions", [dict(self._store)])
        object.__setattr__(self, "usage", Usage())

    @classmethod
    def from_completions(cls, completions: list[dict[str, Any]], usage: Usage | None = None) -> Prediction:
        pred = cls(completions[0] if completions else {})
        object.__setattr__(pred, "completions", completions)
        object.__setattr__(pred, "usage", usage or Usage())
        return pred

    def __setattr__(self, key: str, value: Any) -> None:
        if key in ("completions", "usage"):
            object.__setattr__(self, key, value)
        else:
            self._store[key] = value

    def copy(self, **updates: Any) -> Prediction:
        result = super().copy(**updates)
        object.__setattr__(result, "completions", list(self.completions))
        object.__setattr__(result, "usage", Usage(**asdict(self.usage)))
        return result  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "completions": self.completions, "usage": asdict(self.usage)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        object.__setattr__(self, "completions", state.get("completions", [dict(self._store)]))
        object.__setattr__(self, "usage", Usage(**state.get("usage", {})))

    def __repr__(self) -> str:
        return f"Prediction({self._store!r})"
