"""Write data/{cities,train,dev,test}: an offline city table and questions that need it.

``cities.json`` is the table the agent's tools read: invented cities, each with an invented country and a
population. Each example asks either which country a city is in or how many people live there; the answer
is in the table and nowhere else (the names are made up here, so no model knows them), so the agent has to
call the right tool. Deterministic: the same files on every run.

    python examples/react_agent/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HEADS = ["Amber", "Bright", "Cold", "Dun", "East", "Fern", "Glen", "High", "Iron", "Kettle", "Lark", "Mill",
         "North", "Oak", "Pine", "Red", "Stony", "Thorn", "West", "Yarrow"]  # fmt: skip
TAILS = ["field", "water", "harbor", "mere", "low", "hill", "moor", "cliff", "bridge", "by", "brook", "wick",
         "vale", "crest", "haven", "bury"]  # fmt: skip
COUNTRIES = ["Veldoria", "Marisca", "Ostrelund", "Quorvia", "Talmark", "Bresnia", "Carvadel", "Lumeria"]

# (question template, what it asks for)
QUESTIONS = [
    ("Which country is {city} in?", "country"),
    ("In what country is the city of {city}?", "country"),
    ("{city} is a city in which country?", "country"),
    ("How many people live in {city}?", "population"),
    ("What is the population of {city}?", "population"),
]


def cities(rng: random.Random) -> dict[str, dict[str, object]]:
    names = sorted({f"{head}{tail}" for head in HEADS for tail in TAILS})
    chosen = sorted(rng.sample(names, 120))
    return {
        name: {"country": rng.choice(COUNTRIES), "population": rng.randrange(2_000, 900_000, 10)} for name in chosen
    }


def main(out: Path | None = None) -> None:
    rng = random.Random(5)
    table = cities(rng)
    names = list(table)
    rows = []
    for i in range(320):
        city = rng.choice(names)
        template, key = QUESTIONS[i % len(QUESTIONS)]
        rows.append({"question": template.format(city=city), "answer": str(table[city][key])})
    rng.shuffle(rows)
    out = out or Path(__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cities.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"{out / 'cities.json'}: {len(table)} cities")
    for name, part in (("train", rows[:160]), ("dev", rows[160:240]), ("test", rows[240:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
        print(f"{out / name}.jsonl: {len(part)} examples")


if __name__ == "__main__":
    main()
