"""What LM calls cost: prices per LM, applied where each call is made.

An LM with ``prices`` gives each call it makes a cost in US dollars (``Usage.cost``); an LM without them
counts the call as unpriced (``Usage.unpriced_calls``), and a total with unpriced calls in it is reported as
unknown, never guessed. Calls served from dsr's cache cost nothing. Two ways to price:

- an API model: ``input`` and ``output`` per million prompt and completion tokens, and optionally
  ``cached_input`` for prompt tokens the provider served from its own prompt cache (the response's
  ``prompt_tokens_details.cached_tokens``; billed at ``input`` when not given);
- a self-hosted model: ``gpu_hour`` per GPU hour and the endpoint's measured throughput ``tokens_per_second``
  (prompt plus completion tokens): a call costs the GPU time its tokens take at that rate. ``gpu_hour``
  without a throughput prices no call (its calls are unpriced) until one is known: ``dsr optimize
  --estimate`` measures the endpoint's and prices its plan with it (``with_throughput``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .primitives import Usage

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """Prices in US dollars: per million tokens (API models) or per GPU hour (self-hosted)."""

    input: float | None = None
    output: float | None = None
    cached_input: float | None = None
    gpu_hour: float | None = None
    tokens_per_second: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "gpu_hour", "tokens_per_second"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"Prices.{name} must be a non-negative number, got {value!r}")
        per_token = self.input is not None or self.output is not None
        if per_token and self.gpu_hour is not None:
            raise ValueError("Prices: give token prices (input/output) or gpu_hour, not both")
        if self.tokens_per_second is not None and self.gpu_hour is None:
            raise ValueError("Prices: tokens_per_second is the throughput gpu_hour is paid for: give gpu_hour too")
        if per_token and (self.input is None or self.output is None):
            raise ValueError("Prices: give both input and output (per million tokens)")
        if self.tokens_per_second == 0:
            raise ValueError("Prices.tokens_per_second must be more than 0")

    @property
    def needs_throughput(self) -> bool:
        """A GPU-hour price without the endpoint's throughput: no call can be priced until one is known."""
        return self.gpu_hour is not None and self.tokens_per_second is None

    def with_throughput(self, tokens_per_second: float) -> Prices:
        """These prices with a measured throughput where none was set (a set one wins)."""
        if not self.needs_throughput:
            return self
        return replace(self, tokens_per_second=tokens_per_second)

    def of(self, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> float:
        """The cost of one call's tokens."""
        if self.needs_throughput:
            raise ValueError("Prices: gpu_hour without tokens_per_second prices no call (see needs_throughput)")
        if self.gpu_hour is not None and self.tokens_per_second:
            seconds = (prompt_tokens + completion_tokens) / self.tokens_per_second
            return seconds / 3600 * self.gpu_hour
        cached = min(cached_prompt_tokens, prompt_tokens)
        cached_rate = self.cached_input if self.cached_input is not None else self.input or 0.0
        return (
            (prompt_tokens - cached) * (self.input or 0.0)
            + cached * cached_rate
            + completion_tokens * (self.output or 0.0)
        ) / PER_MILLION


def price(usage: Usage, prices: Prices | None) -> None:
    """Give one call's usage its cost (or count it unpriced); a cached call is free."""
    if usage.cached_calls:
        return
    if prices is None or prices.needs_throughput:
        usage.unpriced_calls += usage.lm_calls
        return
    usage.cost += prices.of(usage.prompt_tokens, usage.completion_tokens, usage.cached_prompt_tokens)


def known_cost(usage: Usage) -> float | None:
    """The usage's cost in dollars, or None when some of its calls had no prices (never a guess)."""
    return None if usage.unpriced_calls else round(usage.cost, 6)
