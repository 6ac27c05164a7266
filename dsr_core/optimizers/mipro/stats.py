"""DSPy's ``track_stats=True`` attributes on MIPROv2's compiled program, built from the finished state.

DSPy attaches them to the best program: ``score``, ``trial_logs`` (per trial, numbered from 1: the chosen
``{i}_predictor_instruction``/``{i}_predictor_demos``, ``mb_score``/``mb_program`` for a minibatch trial or
``full_eval_score``/``full_eval_program`` for a full one, and ``total_eval_calls_so_far``),
``candidate_programs`` (the fully evaluated ones, best first: ``{"score", "program", "full_eval"}``),
``mb_candidate_programs`` (the minibatch ones), ``total_calls`` and ``prompt_model_total_calls``. DSPy 3.4.1
never counts the last two (they stay 0); dsr gives the metric calls of every trial and the instruction
proposals asked of the prompt model. ``log_dir``'s ``*_program_path`` entries are not there (no files are
written).
"""

from __future__ import annotations

from typing import Any

from ...modules.module import Module
from .search import TrialSearch
from .state import MiproState


def attach_trial_stats(compiled: Module, student: Module, state: MiproState, search: TrialSearch) -> None:
    """Set DSPy's ``track_stats`` attributes on ``compiled`` (see the module docstring)."""

    def program_of(params: dict[str, int], baseline: bool) -> Module:
        program = student.deepcopy()
        program.load_state(state.program if baseline else search.candidate(state, params))
        return program

    trial_logs: dict[int, dict[str, Any]] = {}
    scored: list[dict[str, Any]] = []
    calls = 0
    for trial in state.trials:
        calls += trial.n_examples
        program = program_of(trial.params, trial.kind == "baseline")
        full = trial.kind != "minibatch"
        prefix = "full_eval" if full else "mb"
        trial_logs[trial.number + 1] = {
            **trial.params,
            f"{prefix}_score": trial.score,
            f"{prefix}_program": program,
            "total_eval_calls_so_far": calls,
        }
        scored.append({"score": trial.score, "program": program, "full_eval": full})
    scored.sort(key=lambda entry: entry["score"] or 0.0, reverse=True)
    compiled.trial_logs = trial_logs
    compiled.score = state.best_score
    compiled.total_calls = calls
    compiled.prompt_model_total_calls = len(state.proposals)
    compiled.candidate_programs = [entry for entry in scored if entry["full_eval"]]
    compiled.mb_candidate_programs = [entry for entry in scored if not entry["full_eval"]]
