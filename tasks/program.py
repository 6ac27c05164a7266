"""Building the pieces a task needs from its specs: the program, its LM, its metric.

Tasks receive specs (``tasks.specs``), never live objects: the flows pass the run config's spec objects as
they are, and Prefect hashes them (pydantic models) for its INPUTS cache policy. LMs come from the process's
``TaskRegistry``, so every shard running in one process shares one LM per spec and therefore one set of
client-side limits (requests in flight, rpm, tpm).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dsr_core as dsr
from dsr_core.imports import import_ref
from dsr_core.state import load_program_state

from .registry import registry
from .specs import JUDGE_CRITERIA, LMSpec, MetricSpec

LMInput = LMSpec  # what a task receives for an LM: the config's spec object, never a dump to validate again
MetricInput = MetricSpec


def get_lm(spec: LMSpec | Mapping[str, Any], role: str = "task") -> dsr.LM:
    """The process's LM for ``spec`` in ``role`` (task, prompt, judge: how accounts split its spend).

    The tasks pass spec objects, used as they are; a JSON dump of one (as a saved program or a caller outside
    the flows has it) is validated into a spec first and names the same LM."""
    return registry.lm(spec if isinstance(spec, LMSpec) else LMSpec.model_validate(spec), role)


def instantiate(ref: str, state: dict[str, Any] | None = None) -> dsr.Module:
    """The program ``ref`` names, with ``state`` loaded; predictors keep whatever LM the program set. A state
    that carries a program graph (a structural optimizer's candidate) is that graph's program instead."""
    if state and is_graph_state(state):
        return with_state(None, state, source=f"program.state for {ref} (a program graph)")
    target = import_ref(ref)
    program = target() if callable(target) else target
    if not isinstance(program, dsr.Module):
        raise dsr.DsrError(f"program.ref {ref!r} produced {type(program).__name__}, not a dsr Module")
    if state:
        load_program_state(program, state, source=f"program.state for {ref}")
    return program


def is_graph_state(state: dict[str, Any]) -> bool:
    from dsr_core.graph import graph_in_state

    return graph_in_state(state) is not None


def with_state(program: dsr.Module | None, state: dict[str, Any], source: str = "state") -> dsr.Module:
    """A copy of ``program`` with ``state`` loaded, or, for a state that carries a program graph, that
    graph's program (the program's structure is the state's, not the class's)."""
    if is_graph_state(state):
        from dsr_core.graph import GraphProgram

        graph_program = GraphProgram()
        load_program_state(graph_program, state, source=source)
        return graph_program
    if program is None:
        raise dsr.DsrError(f"{source}: a program to load the state into is needed")
    loaded = program.deepcopy()
    load_program_state(loaded, state, source=source)
    return loaded


def build_program(ref: str, state: dict[str, Any] | None, lm: LMInput) -> dsr.Module:
    """``instantiate`` plus the run's LM for every predictor that has none (one LM per process and spec)."""
    program = instantiate(ref, state)
    run_lm = get_lm(lm)
    for predictor in program.predictors():
        if predictor.lm is None:
            predictor.lm = run_lm
    return program


def build_metric(metric: MetricInput, judge_lm: LMInput | None) -> Any:
    """The metric function ``metric`` names: a built-in, an imported callable, or the judge on ``judge_lm``."""
    if metric.ref == "judge":
        if judge_lm is None:
            raise dsr.DsrError("metric 'judge' needs a [judge_lm] section")
        return dsr.LLMJudge(metric.criteria or JUDGE_CRITERIA, lm=get_lm(judge_lm, "judge"))
    if metric.ref in dsr.metrics.BUILTIN_METRICS:
        return dsr.metrics.BUILTIN_METRICS[metric.ref]
    return import_ref(metric.ref)
