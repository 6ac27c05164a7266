"""Write data/{train,dev,test}.jsonl: travel requests labeled with their destination city.

The requests come from the templates and word lists below, written for this example (no outside dataset).
Many requests name a second city (where the traveller leaves from, or a stop on the way), so the task is
picking the destination, not copying the only place name. Deterministic: the same files on every run.

    python examples/travel_destination/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CITIES = [
    "Lisbon", "Denver", "Osaka", "Leeds", "Austin", "Porto", "Dublin", "Lyon", "Boston", "Perth",
    "Madrid", "Oslo", "Seattle", "Nairobi", "Hanoi", "Quebec", "Bergen", "Cusco", "Tallinn", "Seville",
    "Kyoto", "Chicago", "Geneva", "Krakow", "Bristol", "Toronto", "Vienna", "Lima", "Munich", "Adelaide",
    "Marseille", "Athens", "Montreal", "Valencia", "Glasgow", "Nagoya", "Phoenix", "Zurich", "Bologna", "Accra",
]  # fmt: skip
NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Laura", "Omar", "Priya", "Lucas", "Grace", "Ivan", "Sofia", "Ben"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["March", "April", "May", "June", "August", "September", "October", "December"]

# {dest} is the label; {other} is another city that must not be extracted
TEMPLATES = [
    "Please book me a hotel room in {dest} for {day} night.",
    "I need a flight from {other} to {dest} on {day}, leaving in the morning.",
    "{name} and I want to visit {dest} in {month}. Are there train tickets from {other}?",
    "Can you find a cheap apartment in {dest} for the first week of {month}?",
    "My meeting moved to {dest}, so I need a rental car there from {day} to {day2}.",
    "Reserve a table for four in {dest} this {day}, please.",
    "What is the fastest way to get from the airport to downtown {dest}?",
    "{name} is flying from {other} into {dest} on {day}; please arrange a pickup.",
    "I live in {other} and want a weekend trip to {dest} in {month}.",
    "We are planning a guided tour of {dest} for {name}'s birthday in {month}.",
    "Is there a direct bus from {other} to {dest} on {day} evening?",
    "Book two nights near the old town of {dest}, arriving {day}.",
    "After the conference in {other} I will travel on to {dest}. Can you book the train?",
    "Find me a one-way ticket to {dest}; I am leaving {other} on {day}.",
    "Our team offsite is in {dest} this {month}. We all fly out of {other}.",
    "Can I change my booking so that I end up in {dest} instead of {other}?",
    "{name} needs a hotel in {dest} close to the station, checking in on {day}.",
    "Going to {dest} for a wedding in {month}, what should I book first?",
    "I have a layover in {other} on my way to {dest}. Will my bags go straight through?",
    "Which ferry goes to {dest} on {day}? I will be coming from {other}.",
    "Plan a three-day trip to {dest} in {month} for {name} and me.",
    "My parents in {other} want to see me in {dest} next {month}. Find them flights.",
    "Book a sleeper train to {dest} leaving {day} night.",
    "I am relocating to {dest} for work in {month}; I need a furnished flat.",
    "Get me to {dest} by {day} noon. I start from {other}.",
    "Is it cheaper to fly or drive from {other} to {dest} in {month}?",
    "Send the tickets for {dest} to {name}; the trip starts on {day}.",
    "We skipped {other} this year and picked {dest} for our holiday in {month}.",
    "Find a hostel in {dest} for {day} and {day2}.",
    "{name} would like a rental bike in {dest} on {day}.",
]


def request(rng: random.Random, template: str) -> dict[str, str]:
    dest, other = rng.sample(CITIES, 2)
    day, day2 = rng.sample(DAYS, 2)
    text = template.format(dest=dest, other=other, day=day, day2=day2, name=rng.choice(NAMES), month=rng.choice(MONTHS))
    return {"request": text, "city": dest}


def main(out: Path | None = None) -> None:
    rng = random.Random(7)
    rows = [request(rng, TEMPLATES[i % len(TEMPLATES)]) for i in range(360)]
    rng.shuffle(rows)
    out = out or Path(__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:160]), ("dev", rows[160:260]), ("test", rows[260:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
        print(f"{out / name}.jsonl: {len(part)} examples")


if __name__ == "__main__":
    main()
