"""Write data/{train,dev,test}.jsonl: customer messages, each naming one order code among other numbers.

An order code is two capital letters, a dash and four digits (``KT-3057``). Each message also holds things
that look a little like one (a phone number, a price, a date, a ticket or parcel number), so the task is
picking the right one and copying it exactly. Deterministic: the same files on every run.

    python examples/refine_answers/make_data.py
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

NAMES = ["Ada", "Bruno", "Celia", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Leon",
         "Mina", "Nils", "Olga", "Pavel", "Rosa", "Sami", "Tessa", "Umar", "Vera", "Wim", "Yara", "Zeno"]  # fmt: skip
ITEMS = ["blue kettle", "desk lamp", "pair of boots", "phone case", "rain jacket", "coffee grinder", "backpack",
         "set of towels", "garden hose", "wool scarf", "bike lock", "tea set"]  # fmt: skip
MONTHS = ["March", "April", "May", "June", "July", "August", "September", "October"]

TEMPLATES = [
    "Hi, my order {code} for a {item} has not arrived yet. I paid ${price} on {month} {day}. Call me on {phone}.",
    "Hello, I am {name}. The {item} in order {code} came broken. My phone is {phone} and the parcel was {parcel}.",
    "Order {code}: I was charged ${price} twice for the {item}. Please refund one payment. Thanks, {name}",
    "Can you change the address on {code}? The {item} should go to {number} Mill Road. Regards, {name}",
    "Ticket {ticket} is still open. It is about order {code}, a {item} I returned on {month} {day}.",
    "I want to cancel {code} before it ships. It is a {item} for ${price}. You can reach me at {phone}.",
    "The tracking number {parcel} shows no movement since {month} {day}. My order code is {code}. {name}",
    "{name} here. I ordered a {item} ({code}) on {month} {day} and got a {other} instead. Ticket {ticket}.",
    "Please send an invoice for order {code}. The {item} cost ${price}; my customer number is {number}.",
    "My {item} from order {code} is the wrong size. Can I swap it? Phone {phone}, {month} {day}.",
]


def order_code(rng: random.Random) -> str:
    return f"{rng.choice(string.ascii_uppercase)}{rng.choice(string.ascii_uppercase)}-{rng.randint(1000, 9999)}"


def example(rng: random.Random, index: int) -> dict[str, str]:
    code = order_code(rng)
    item, other = rng.sample(ITEMS, 2)
    message = TEMPLATES[index % len(TEMPLATES)].format(
        code=code,
        item=item,
        other=other,
        name=rng.choice(NAMES),
        price=f"{rng.randint(5, 240)}.{rng.randint(0, 99):02d}",
        month=rng.choice(MONTHS),
        day=rng.randint(1, 28),
        phone=f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        parcel=f"PK{rng.randint(10000000, 99999999)}",
        ticket=f"#{rng.randint(10000, 99999)}",
        number=rng.randint(10, 9999),
    )
    return {"message": message, "order_code": code}


def main(out: Path | None = None) -> None:
    rng = random.Random(23)
    rows = [example(rng, i) for i in range(320)]
    rng.shuffle(rows)
    out = out or Path(__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:160]), ("dev", rows[160:240]), ("test", rows[240:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
        print(f"{out / name}.jsonl: {len(part)} examples")


if __name__ == "__main__":
    main()
