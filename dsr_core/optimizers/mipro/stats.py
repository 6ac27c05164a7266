"""DSPy's ``track_stats=True`` attributes on MIPROv2's compiled program, built from the finished state.

DSPy attaches them to the best program: ``score``, ``trial_logs`` (per trial, numbered from 1: the chosen
``{i}_predictor_instruction``/``{i}_predictor_demos``, ``mb_score``/``mb_program`` for a minibatch trial or
``full_eval_score``/``full_eval_program`` for a full one, and ``total_eval_calls_so_far``),
``candidate_programs`` (the fully evaluated ones, best first: ``{"score", "program", "full_eval"}``),
``mb_candidate_programs`` (the minibatch ones), ``total_calls`` and ``prompt_model_total_calls``. DSPy 3.4.1
never counts the last two (they stay 0); dsr gives the metric calls of every trial and the instruction
proposals asked of the prompt model.

With ``log_dir``, as in DSPy, every evaluated program is saved (JSON) under ``log_dir/evaluated_programs``
with DSPy's file names: ``program_-1.json`` for the program as given, ``program_{n}.json`` for trial ``n``
(``program_{n}_full_eval.json`` for a full evaluation between minibatches), and the trial logs carry the paths
(``full_eval_program_path``, ``mb_program_path``). dsr writes them when the run finishes, from its state, so a
resumed run writes the same files.
"""

from __future__ import annotations

import os
from typing import Any

from ...modules.module import Module
from .search import TrialSearch
from .state import MiproState


def trial_program(student: Module, state: MiproState, search: TrialSearch, number: int) -> Module:
    """Trial ``number``'s program: the student with that trial's instructions and demos."""
    trial = state.trials[number]
    program = student.deepcopy()
    program.load_state(state.program if trial.kind == "baseline" else search.candidate(state, trial.params))
    return program


def save_trial_programs(
    student: Module, state: MiproState, search: TrialSearch, log_dir: str, minibatch: bool
) -> dict[int, dict[str, str]]:
    """Save every trial's program as DSPy's ``log_dir`` does; per trial log key, the path entry to add."""
    folder = os.path.join(log_dir, "evaluated_programs")
    os.makedirs(folder, exist_ok=True)
    paths: dict[int, dict[str, str]] = {}
    for trial in state.trials:
        key = trial.number + 1
        if trial.kind == "baseline":
            name, entry = "program_-1.json", "full_eval_program_path"
        elif trial.kind == "minibatch":
            name, entry = f"program_{key}.json", "mb_program_path"
        else:  # DSPy marks the full evaluations between minibatches in the file name
            name, entry = (
                (f"program_{key}_full_eval.json" if minibatch else f"program_{key}.json"),
                "full_eval_program_path",
            )
        path = os.path.join(folder, name)
        trial_program(student, state, search, trial.number).save(path)
        paths[key] = {entry: path}
    return paths


def attach_trial_stats(
    compiled: Module,
    student: Module,
    state: MiproState,
    search: TrialSearch,
    paths: dict[int, dict[str, str]] | None = None,
) -> None:
    """Set DSPy's ``track_stats`` attributes on ``compiled`` (see the module docstring); ``paths`` are the saved
    programs' entries when there is a ``log_dir``."""

    trial_logs: dict[int, dict[str, Any]] = {}
    scored: list[dict[str, Any]] = []
    calls = 0
    for trial in state.trials:
        calls += trial.n_examples
        program = trial_program(student, state, search, trial.number)
        full = trial.kind != "minibatch"
        prefix = "full_eval" if full else "mb"
        trial_logs[trial.number + 1] = {
            **trial.params,
            f"{prefix}_score": trial.score,
            f"{prefix}_program": program,
            "total_eval_calls_so_far": calls,
            **(paths or {}).get(trial.number + 1, {}),
        }
        scored.append({"score": trial.score, "program": program, "full_eval": full})
    scored.sort(key=lambda entry: entry["score"] or 0.0, reverse=True)
    compiled.trial_logs = trial_logs
    compiled.score = state.best_score
    compiled.total_calls = calls
    compiled.prompt_model_total_calls = len(state.proposals)
    compiled.candidate_programs = [entry for entry in scored if entry["full_eval"]]
    compiled.mb_candidate_programs = [entry for entry in scored if not entry["full_eval"]]
