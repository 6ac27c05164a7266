"""What a task needs to know about a run: the program, the LM and the metric, as small pydantic specs.

The run config (``flows.config.RunConfig``) is composed of these sections; tasks receive them as they are (the
flows pass the config's spec objects, which Prefect hashes for its cache keys) and build live objects from
them in their own process. References are imported through ``dsr_core.imports.import_ref``, one rule
everywhere: the working folder is on the path.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

import dsr_core as dsr
from dsr_core.costs import Prices
from dsr_core.imports import import_ref

JUDGE_CRITERIA = "The response correctly and fully answers the task."  # the judge's criteria when none is given
Problems = list[tuple[str, str]]  # (config path, message) pairs


class Spec(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ProgramSpec(Spec):
    ref: str = Field(description="'package.module:attr': a Module subclass or a zero-argument factory")
    state: str | None = Field(None, description="saved program JSON: a path or an fsspec URL (s3://...)")

    def problems(self, path: str = "program.ref") -> Problems:
        """Whether ``ref`` imports and names a Module subclass or a factory."""
        try:
            target = import_ref(self.ref)
        except Exception as exc:  # noqa: BLE001 - report any import failure with its path
            return [(path, f"cannot import {self.ref!r}: {exc}")]
        if not (isinstance(target, type) and issubclass(target, dsr.Module)) and not callable(target):
            return [(path, f"{self.ref} is neither a Module subclass nor a factory")]
        return []


class MetricSpec(Spec):
    ref: str = Field("exact_match", description="'package.module:function' or exact_match | f1 | judge")
    criteria: str | None = Field(None, description="what the judge checks (metric 'judge')")

    def problems(self, has_judge_lm: bool, path: str = "metric.ref") -> Problems:
        """Whether ``ref`` is a built-in, the judge (with a judge LM), or a callable that imports."""
        if self.ref == "judge":
            return [] if has_judge_lm else [("judge_lm", "metric 'judge' needs a [judge_lm] section")]
        if self.ref in dsr.metrics.BUILTIN_METRICS:
            return []
        try:
            if not callable(import_ref(self.ref)):
                return [(path, f"{self.ref} is not callable")]
        except Exception as exc:  # noqa: BLE001
            return [(path, f"cannot import {self.ref!r} (built-ins: exact_match, f1, judge): {exc}")]
        return []


class LMSpec(Spec):
    model: str
    api_base: str | None = None
    api_key_env: str | None = Field(
        None,
        description="NAME of the environment variable holding the key; default: the provider's "
        "(OPENAI_API_KEY, or ANTHROPIC_API_KEY for anthropic/..., as LiteLLM reads them)",
    )
    temperature: float = 0.0
    max_tokens: int = Field(1000, ge=1)
    max_concurrency: int = Field(64, ge=1)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    cache: bool = True
    num_retries: int = Field(5, ge=0)
    timeout: float = Field(120.0, gt=0)
    # what calls cost (US dollars); unset: costs are reported as unknown, never guessed (dsr_core/costs.py)
    input_price: float | None = Field(None, ge=0, description="USD per million prompt tokens")
    output_price: float | None = Field(None, ge=0, description="USD per million completion tokens")
    cached_input_price: float | None = Field(
        None, ge=0, description="USD per million prompt tokens served from the provider's prompt cache"
    )
    gpu_hour_price: float | None = Field(None, ge=0, description="USD per GPU hour (a self-hosted endpoint)")
    tokens_per_second: float | None = Field(
        None, gt=0, description="the self-hosted endpoint's measured throughput, prompt + completion tokens"
    )

    @model_validator(mode="after")
    def _provider_is_known(self) -> LMSpec:
        from dsr_core.lm.providers import resolve

        # LMConfigError is a ValueError: an unroutable model is a config error naming lm.model
        provider, _ = resolve(self.model, self.api_base or os.environ.get("OPENAI_BASE_URL"))
        if self.api_key_env is None:  # the provider's variable, written out (MLflow params, preflight)
            self.api_key_env = provider.api_key_env or "OPENAI_API_KEY"
        return self

    @model_validator(mode="after")
    def _prices_are_complete(self) -> LMSpec:
        self.prices()  # raises for an incomplete or contradictory set, naming what is missing
        return self

    def prices(self) -> Prices | None:
        """The prices the fields give, or None when none are set."""
        values = {
            "input": self.input_price,
            "output": self.output_price,
            "cached_input": self.cached_input_price,
            "gpu_hour": self.gpu_hour_price,
            "tokens_per_second": self.tokens_per_second,
        }
        if all(v is None for v in values.values()):
            return None
        return Prices(**values)

    def result_params(self) -> dict[str, Any]:
        """The settings that change what the model answers (not where it is served or how fast)."""
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def key(self) -> str:
        """Identifies the spec: equal specs share one LM per process."""
        return self.model_dump_json()

    def build(self, role: str = "task") -> dsr.LM:
        """A new LM client with these settings (the key is read from ``api_key_env`` when a call needs it);
        ``role`` is whose spend its calls are in accounts by role (task, prompt, judge)."""
        return dsr.LM(
            self.model,
            api_base=self.api_base,
            api_key_env=self.api_key_env,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            max_concurrency=self.max_concurrency,
            rpm=self.rpm,
            tpm=self.tpm,
            cache=self.cache,
            num_retries=self.num_retries,
            timeout=self.timeout,
            prices=self.prices(),
            role=role,
        )
