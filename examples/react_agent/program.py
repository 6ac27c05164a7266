"""A ReAct agent over two offline lookup tools: which country a city is in, and how many people live there.

The cities are invented (``data/cities.json``, written by ``make_data.py``), so the facts are in the tools and
nowhere else: the agent has to pick the tool the question needs, call it with the city, then finish; ReAct's
``extract`` step answers from the trajectory. Both of ReAct's predictors are optimized together: a
bootstrapped demo for ``react`` is one step of a run whose final answer was right (the tool and its
arguments), and one for ``extract.predict`` is that run's reasoning and answer.

The bundled 135M model keeps to JSON (llama.cpp constrains it to the schema, which makes ``next_tool_name``
one of the tools) far better than to the chat format, so both predictors use the JSONAdapter.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from typing_extensions import TypedDict

import dsr_core as dsr
from dsr_core.adapters.tool import Tool
from dsr_core.modules.react import ReAct

CITIES = Path(__file__).parent / "data" / "cities.json"


@cache
def _table() -> dict[str, dict[str, object]]:
    return {name.lower(): facts for name, facts in json.loads(CITIES.read_text(encoding="utf-8")).items()}


def _facts(city: str) -> dict[str, object]:
    key = city.strip().strip("\"'.?!").lower()
    if key not in _table():
        raise KeyError(f"no city named {city!r} in the table")
    return _table()[key]


def country_of(city: str) -> str:
    """Look up the country a city is in."""
    return str(_facts(city)["country"])


def population_of(city: str) -> int:
    """Look up how many people live in a city."""
    return int(_facts(city)["population"])  # type: ignore[call-overload]


REACT_INSTRUCTIONS = (
    "Answer a question about a city. If it asks for the country, call country_of; if it asks how many people "
    "live there or the population, call population_of; give the city's name as the argument. When the "
    "trajectory has the answer, call finish. The tools:"
)
EXTRACT_INSTRUCTIONS = (
    "Answer the question about a city with the value a tool returned in the trajectory (an observation): "
    "a country's name, or a number."
)


class CityArgs(TypedDict):
    city: str


class CityQuestion(dsr.Signature):
    """Answer a question about a city. Use the tools to look up its country or its population."""

    question: str = dsr.InputField()
    answer: str = dsr.OutputField(desc="the country's name, or the population as a number")


class CityAgent(ReAct):
    """ReAct over ``country_of`` and ``population_of``; its predictors are ``react`` and ``extract.predict``."""

    def __init__(self, max_iters: int = 2) -> None:
        super().__init__(CityQuestion, tools=[country_of, population_of], max_iters=max_iters)
        # Made for a 135M model: every step's arguments are `{"city": ...}` (llama.cpp constrains the reply to
        # that schema; finish takes and ignores it), the instructions are a short version of ReAct's (the task,
        # then DSPy's tool list), and extract is told where the answer is.
        self.tools["finish"] = Tool(_finish, name="finish", desc=self.tools["finish"].desc)
        react = self.react.signature.with_updated_fields("next_tool_args", type_=CityArgs)
        tools = [f"({i}) {tool}" for i, tool in enumerate(self.tools.values(), start=1)]
        self.react.signature = react.with_instructions("\n".join([REACT_INSTRUCTIONS, *tools]))
        self.extract.predict.signature = self.extract.predict.signature.with_instructions(EXTRACT_INSTRUCTIONS)
        self.react.adapter = dsr.JSONAdapter()
        self.extract.predict.adapter = dsr.JSONAdapter()


def _finish(city: str = "") -> str:
    return "Completed."


def answer_match(example: dsr.Example, prediction: dsr.Prediction, trace: object = None) -> bool:
    """The answer is the labeled country or number (case, punctuation and thousands separators ignored)."""
    answer = re.sub(r"(?<=\d)[,_ ](?=\d)", "", str(prediction.answer))
    return dsr.metrics.exact_match_score(answer, example.answer) == 1.0
