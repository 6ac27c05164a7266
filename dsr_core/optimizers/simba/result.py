"""What DSPy's SIMBA attaches to the program it returns: ``candidate_programs`` and ``trial_logs``."""

from __future__ import annotations

from typing import Any

from ...modules.module import Module
from .state import SimbaState, program_state


def candidate_programs(student: Module, state: SimbaState) -> list[dict[str, Any]]:
    """The winners scored at the end as ``{"score", "program"}``, best first (equals in scoring order)."""
    candidates = []
    for number, score in zip(state.final, state.final_scores, strict=True):
        program = student.deepcopy()
        program.load_state(program_state(state.program, state.programs[number]))
        candidates.append({"score": score, "program": program})
    candidates.sort(key=lambda item: item["score"], reverse=True)
    return candidates


def trial_logs(state: SimbaState) -> dict[int, dict[str, Any]]:
    """Per step: the mean trajectory score, the candidates' mini-batch scores, and the final score of the
    step's winner when it was scored (DSPy files that score by position in the scored list, not by step)."""
    final = dict(zip(state.final, state.final_scores, strict=True))
    return {
        record.number: {
            "baseline_score": record.baseline_score,
            "candidate_scores": record.scores,
            **({"train_score": final[record.winner]} if record.winner in final else {}),
        }
        for record in state.history
    }
