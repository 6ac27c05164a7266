"""The program the flow benchmark evaluates (referenced as bench.flow_program:make_program)."""

import dsr_core as dsr


def make_program() -> dsr.Module:
    return dsr.Predict("question -> answer")
