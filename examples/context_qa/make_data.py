"""Write data/{train,dev,test}.jsonl: questions about short passages, HotpotQA-shaped.

Each example has a question, a context of four passages (one answers it, three describe other people or
places of the same kind) and a short answer copied from the answering passage. The people, places and
facts are invented here from the word lists below, so no model can know them without reading the context.
Deterministic: the same files on every run.

    python examples/context_qa/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FIRST = ["Ada", "Bruno", "Celia", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Leon",
         "Mina", "Nils", "Olga", "Pavel", "Rosa", "Sami", "Tessa", "Umar", "Vera", "Wim", "Yara", "Zeno"]  # fmt: skip
LAST = ["Albright", "Brenner", "Castell", "Dorn", "Ellery", "Falk", "Gray", "Holm", "Ivers", "Jansen", "Kovac",
        "Lund", "Marsh", "Nyberg", "Orloff", "Pike", "Quint", "Rask", "Sorel", "Thorne"]  # fmt: skip
TOWNS = ["Amberfield", "Brightwater", "Coldharbor", "Dunmere", "Eastlow", "Fernhill", "Glenmoor", "Highcliff",
         "Ironbridge", "Kettleby", "Larkspur", "Millbrook", "Northwick", "Oakvale", "Pinecrest", "Redhaven",
         "Stonybrook", "Thornbury", "Westmarch", "Yarrowby"]  # fmt: skip
JOBS = ["painter", "engineer", "violinist", "botanist", "architect", "chemist", "novelist", "sculptor",
        "astronomer", "photographer", "surgeon", "cartographer"]  # fmt: skip
WORKS = {
    "painter": "the painting", "engineer": "the bridge", "violinist": "the sonata", "botanist": "the garden",
    "architect": "the library", "chemist": "the dye", "novelist": "the novel", "sculptor": "the statue",
    "astronomer": "the comet survey", "photographer": "the photo series", "surgeon": "the clinic",
    "cartographer": "the river map",
}  # fmt: skip
TITLES = ["Silver Harbor", "Quiet Orchard", "Blue Lantern", "Iron Meadow", "Red Kite", "Salt Road", "Green Tide",
          "Long Winter", "Paper Moon", "Glass Valley", "North Star", "Amber Gate"]  # fmt: skip

# (question template, answer key)
QUESTIONS = [
    ("Which town is {name} from?", "town"),
    ("Where was {name} born?", "town"),
    ("What was the job of {name}?", "job"),
    ("What did {name} work as?", "job"),
    ("In which year was {work} by {name} finished?", "year"),
    ("When did {name} finish {work}?", "year"),
    ("What is the name of {work} that {name} made?", "title"),
    ("Which work by {name} is called {title_quoted}?", "work_kind"),
]


def person(rng: random.Random, used: set[str]) -> dict[str, str]:
    while True:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name not in used:
            used.add(name)
            break
    job = rng.choice(JOBS)
    return {
        "name": name,
        "town": rng.choice(TOWNS),
        "job": job,
        "work": WORKS[job],
        "title": rng.choice(TITLES),
        "year": str(rng.randint(1850, 1990)),
    }


def passage(p: dict[str, str]) -> str:
    return (
        f"{p['name']} was a {p['job']} born in {p['town']}. {p['name'].split()[0]} is best known for "
        f"{p['work']} called {p['title']}, finished in {p['year']}."
    )


def example(rng: random.Random, index: int) -> dict[str, object]:
    used: set[str] = set()
    people = [person(rng, used) for _ in range(4)]
    target = people[0]
    template, key = QUESTIONS[index % len(QUESTIONS)]
    question = template.format(name=target["name"], work=target["work"], title_quoted=f'"{target["title"]}"')
    answer = target["work"].removeprefix("the ") if key == "work_kind" else target[key]
    context = [passage(p) for p in people]
    rng.shuffle(context)
    return {"question": question, "context": context, "answer": answer}


def main(out: Path | None = None) -> None:
    rng = random.Random(11)
    rows = [example(rng, i) for i in range(320)]
    rng.shuffle(rows)
    out = out or Path(__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:160]), ("dev", rows[160:240]), ("test", rows[240:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
        print(f"{out / name}.jsonl: {len(part)} examples")


if __name__ == "__main__":
    main()
