"""Building the pieces a task needs from plain, JSON-able config: the program, its LM, its metric.

Tasks receive refs and dicts (hashable inputs for Prefect's INPUTS cache policy), never live objects.
LMs are kept per process and per config, so every shard running in one process shares one LM and
therefore one set of client-side limits (requests in flight, rpm, tpm).
"""

from __future__ import annotations

import json
from typing import Any

import dsr_core as dsr
from dsr_core.state import load_program_state
from flows.config import LMConfig, MetricConfig, import_ref

_lms: dict[str, dsr.LM] = {}


def get_lm(config: dict[str, Any]) -> dsr.LM:
    key = json.dumps(config, sort_keys=True)
    lm = _lms.get(key)
    if lm is None:
        lm = _lms[key] = LMConfig.model_validate(config).build()
    return lm


def instantiate(ref: str, state: dict[str, Any] | None = None) -> dsr.Module:
    """The program ``ref`` names, with ``state`` loaded; predictors keep whatever LM the program set."""
    target = import_ref(ref)
    program = target() if callable(target) else target
    if not isinstance(program, dsr.Module):
        raise dsr.DsrError(f"program.ref {ref!r} produced {type(program).__name__}, not a dsr Module")
    if state:
        load_program_state(program, state, source=f"program.state for {ref}")
    return program


def build_program(ref: str, state: dict[str, Any] | None, lm_config: dict[str, Any]) -> dsr.Module:
    """``instantiate`` plus the run's LM for every predictor that has none (one LM per process and config)."""
    program = instantiate(ref, state)
    lm = get_lm(lm_config)
    for predictor in program.predictors():
        if predictor.lm is None:
            predictor.lm = lm
    return program


def build_metric(metric: dict[str, Any], judge_lm: dict[str, Any] | None) -> Any:
    config = MetricConfig.model_validate(metric)
    if config.ref == "judge":
        if judge_lm is None:
            raise dsr.DsrError("metric 'judge' needs a [judge_lm] section")
        criteria = config.criteria or "The response correctly and fully answers the task."
        return dsr.LLMJudge(criteria, lm=get_lm(judge_lm))
    if config.ref in dsr.metrics.BUILTIN_METRICS:
        return dsr.metrics.BUILTIN_METRICS[config.ref]
    return import_ref(config.ref)
