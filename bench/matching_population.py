"""A synthetic population with ground truth for the probabilistic-matching benchmark.

PEOPLE people, each seen in one to three source systems (a CRM, shop tills, a loyalty
programme; 60/30/10 %), so about 1.5 records per person. Every record is a copy of the person
with the errors these systems make, drawn independently per record:

- first names: a nickname (12 %, from this module's own table, not the matcher's), a typo
  (8 %), missing (2 %); last names: a typo (8 %), missing (2 %); first and last swapped (4 %);
- dates of birth: missing (15 %, 50 % at the tills), day and month transposed (3 %, when the
  day allows), the year off by one (2 %), one mistyped digit (3 %);
- email: missing (CRM 20 %, tills 70 %, loyalty 30 %), another of the person's addresses
  (15 %), a typo (5 %);
- phone: missing (CRM 35 %, tills 45 %, loyalty 55 %), written in one of four formats (only
  the +1 form is a usable identifier), a mistyped digit (3 %);
- address: missing (15 %), moved to another street, city and zip (15 % of second and third
  records), "Street" written "St" and the like (20 %), city or zip mistyped (3 % each).

A tenth of the people live in households of two to four: the same last name and address,
different first names, dates of birth, emails and phones (the false positives a matcher must
resist). Names come from Faker's en_US tables with their frequencies, so common surnames are
common. Emails are on example.com/.org/.net. Deterministic for a given seed.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from faker.providers.person.en_US import Provider as PersonNames

SOURCES = ("crm", "pos", "loyalty")
ID_TYPES = {"crm": "crm_id", "pos": "pos_id", "loyalty": "loyalty_id"}
DOMAINS = ("example.com", "example.org", "example.net")
STREET_SUFFIXES = {
    "Street": "St",
    "Avenue": "Ave",
    "Road": "Rd",
    "Lane": "Ln",
    "Drive": "Dr",
    "Court": "Ct",
    "Place": "Pl",
    "Boulevard": "Blvd",
}
CITY_PARTS = (
    ("North", "South", "East", "West", "New", "Lake", "Port", "Fort", "Mount", "Glen", ""),
    ("field", "ford", "ton", "ville", "burg", "haven", "port", "view", "side", "wood", "dale"),
)
# The bench's own nickname table (the usual English diminutives), independent of the
# matcher's matching/nicknames.py: the generator must not be tuned to the matcher.
BENCH_NICKNAMES = {
    "William": ["Bill", "Will", "Billy"], "Robert": ["Bob", "Rob", "Bobby"],
    "Richard": ["Rick", "Dick", "Rich"], "James": ["Jim", "Jimmy", "Jamie"],
    "John": ["Jack", "Johnny"], "Michael": ["Mike", "Mikey"], "Joseph": ["Joe", "Joey"],
    "Thomas": ["Tom", "Tommy"], "Charles": ["Charlie", "Chuck"], "Christopher": ["Chris"],
    "Daniel": ["Dan", "Danny"], "Matthew": ["Matt"], "Anthony": ["Tony"],
    "Donald": ["Don"], "Steven": ["Steve"], "Stephen": ["Steve"], "Andrew": ["Andy", "Drew"],
    "Kenneth": ["Ken", "Kenny"], "Joshua": ["Josh"], "Edward": ["Ed", "Eddie", "Ted"],
    "Ronald": ["Ron"], "Timothy": ["Tim"], "Jeffrey": ["Jeff"], "Gregory": ["Greg"],
    "Benjamin": ["Ben"], "Samuel": ["Sam"], "Patrick": ["Pat"], "Alexander": ["Alex"],
    "Nicholas": ["Nick"], "Jonathan": ["Jon"], "Zachary": ["Zach"], "Douglas": ["Doug"],
    "Peter": ["Pete"], "Gerald": ["Jerry"], "Lawrence": ["Larry"], "Philip": ["Phil"],
    "Frederick": ["Fred"], "Raymond": ["Ray"], "Eugene": ["Gene"], "Harold": ["Harry"],
    "Elizabeth": ["Liz", "Beth", "Betty"], "Jennifer": ["Jen", "Jenny"],
    "Patricia": ["Pat", "Patty", "Trish"], "Margaret": ["Maggie", "Peggy", "Meg"],
    "Katherine": ["Kate", "Kathy", "Katie"], "Catherine": ["Cathy", "Kate"],
    "Susan": ["Sue", "Susie"], "Deborah": ["Debbie", "Deb"], "Rebecca": ["Becky"],
    "Jessica": ["Jess"], "Victoria": ["Vicky", "Tori"], "Christina": ["Tina", "Chris"],
    "Samantha": ["Sam"], "Pamela": ["Pam"], "Kimberly": ["Kim"], "Cynthia": ["Cindy"],
    "Barbara": ["Barb"], "Judith": ["Judy"], "Dorothy": ["Dot"], "Amanda": ["Mandy"],
    "Melissa": ["Missy", "Mel"], "Stephanie": ["Steph"], "Alexandra": ["Alex", "Sandra"],
    "Abigail": ["Abby"], "Theresa": ["Terry", "Tess"], "Jacqueline": ["Jackie"],
    "Gabrielle": ["Gabby"], "Natalie": ["Nat"], "Valerie": ["Val"], "Suzanne": ["Sue"],
}  # fmt: skip


@dataclass(frozen=True)
class Person:
    number: int
    first_name: str
    last_name: str
    birthday: date
    emails: tuple[str, ...]
    phone: str  # ten digits
    address: tuple[str, str, str]  # street line, city, zip


@dataclass
class SourceRecord:
    person: int
    source: str
    external_id: str
    traits: dict[str, Any] = field(default_factory=dict)


def _weighted(table: dict[str, float]) -> tuple[list[str], list[float]]:
    return list(table), [float(w) for w in table.values()]


class _World:
    def __init__(self, rng: random.Random, people: int) -> None:
        self.rng = rng
        self.male = _weighted(PersonNames.first_names_male)
        self.female = _weighted(PersonNames.first_names_female)
        self.last = _weighted(PersonNames.last_names)
        cities: set[str] = set()
        while len(cities) < max(50, people // 100):
            prefix, suffix = rng.choice(CITY_PARTS[0]), rng.choice(CITY_PARTS[1])
            stem = rng.choice(self.last[0])
            cities.add(f"{prefix} {stem}{suffix}".strip())
        self.cities = sorted(cities)
        self.zips = {
            city: [f"{rng.randint(10000, 99999):05d}" for _ in range(rng.randint(2, 8))]
            for city in self.cities
        }
        self.streets = [
            f"{rng.choice(self.last[0])} {rng.choice(list(STREET_SUFFIXES))}"
            for _ in range(max(200, people // 10))
        ]
        self.area_codes = [rng.randint(201, 989) for _ in range(60)]
        self.phones: set[str] = set()
        self.emails: set[str] = set()

    def first_name(self) -> str:
        names, weights = self.male if self.rng.random() < 0.5 else self.female
        return self.rng.choices(names, weights)[0]

    def last_name(self) -> str:
        return self.rng.choices(*self.last)[0]

    def address(self) -> tuple[str, str, str]:
        city = self.rng.choice(self.cities)
        street = f"{self.rng.randint(1, 9999)} {self.rng.choice(self.streets)}"
        return street, city, self.rng.choice(self.zips[city])

    def phone(self) -> str:
        while True:
            number = f"{self.rng.choice(self.area_codes)}{self.rng.randint(2000000, 9999999)}"
            if number not in self.phones:
                self.phones.add(number)
                return number

    def email(self, first: str, last: str, number: int) -> str:
        first, last = first.lower(), last.lower().replace(" ", "")
        styles = (
            f"{first}.{last}",
            f"{first}{last}",
            f"{first[0]}{last}",
            f"{first}_{last}{self.rng.randint(1, 99)}",
            f"{last}.{first}",
        )
        base = self.rng.choice(styles)
        candidate = f"{base}@{self.rng.choice(DOMAINS)}"
        while candidate in self.emails:
            candidate = f"{base}{self.rng.randint(1, 9999)}@{self.rng.choice(DOMAINS)}"
        self.emails.add(candidate)
        return candidate


def _people(count: int, rng: random.Random, world: _World) -> list[Person]:
    out: list[Person] = []
    household: tuple[str, tuple[str, str, str]] | None = None
    household_left = 0
    for number in range(count):
        if household_left == 0 and rng.random() < 0.04:
            household = (world.last_name(), world.address())
            household_left = rng.randint(2, 4)
        if household_left and household is not None:
            last, address = household
            household_left -= 1
        else:
            last, address = world.last_name(), world.address()
        first = world.first_name()
        birthday = date(1940, 1, 1) + timedelta(days=rng.randint(0, 65 * 365))
        emails = tuple(world.email(first, last, number) for _ in range(rng.choice((1, 1, 2))))
        out.append(Person(number, first, last, birthday, emails, world.phone(), address))
    return out


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    position = rng.randrange(1, len(text))
    kind = rng.random()
    letters = string.ascii_lowercase if text[position].islower() else string.ascii_uppercase
    if kind < 0.3:  # substitution
        return text[:position] + rng.choice(letters) + text[position + 1 :]
    if kind < 0.55:  # deletion
        return text[:position] + text[position + 1 :]
    if kind < 0.8:  # insertion
        return text[:position] + rng.choice(letters) + text[position:]
    if position < len(text) - 1:  # transposition
        return text[:position] + text[position + 1] + text[position] + text[position + 2 :]
    return text


def _digit_typo(rng: random.Random, digits: str, start: int = 0) -> str:
    position = rng.randrange(start, len(digits))
    options = [d for d in string.digits if d != digits[position]]
    return digits[:position] + rng.choice(options) + digits[position + 1 :]


def _format_phone(rng: random.Random, digits: str) -> str:
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    return rng.choice(
        (
            f"+1 {area}-{exchange}-{line}",
            f"({area}) {exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"{area}{exchange}{line}",
        )
    )


def _birthday(rng: random.Random, day: date, source: str) -> str | None:
    if rng.random() < (0.5 if source == "pos" else 0.15):
        return None
    year, month, dom = day.year, day.month, day.day
    roll = rng.random()
    if roll < 0.03 and dom <= 12 and dom != month:
        month, dom = dom, month
    elif roll < 0.05:
        year += rng.choice((-1, 1))
    elif roll < 0.08:
        text = _digit_typo(rng, f"{year:04d}{month:02d}{dom:02d}", start=2)
        year, month, dom = int(text[:4]), int(text[4:6]), int(text[6:])
        if not (1 <= month <= 12 and 1 <= dom <= 28):
            year, month, dom = day.year, day.month, day.day
    return f"{year:04d}-{month:02d}-{dom:02d}"


def record_of(
    rng: random.Random, world: _World, person: Person, source: str, nth: int
) -> dict[str, Any]:
    """The traits one source system holds about a person, with that system's errors."""
    traits: dict[str, Any] = {}
    first, last = person.first_name, person.last_name
    if rng.random() < 0.12 and first in BENCH_NICKNAMES:
        first = rng.choice(BENCH_NICKNAMES[first])
    if rng.random() < 0.08:
        first = _typo(rng, first)
    if rng.random() < 0.08:
        last = _typo(rng, last)
    if rng.random() < 0.04:
        first, last = last, first
    if rng.random() >= 0.02:
        traits["first_name"] = first
    if rng.random() >= 0.02:
        traits["last_name"] = last
    birthday = _birthday(rng, person.birthday, source)
    if birthday:
        traits["birthday"] = birthday
    if rng.random() >= {"crm": 0.2, "pos": 0.7, "loyalty": 0.3}[source]:
        email = person.emails[0]
        if len(person.emails) > 1 and rng.random() < 0.15:
            email = person.emails[1]
        if rng.random() < 0.05:
            local, _, domain = email.partition("@")
            email = f"{_typo(rng, local)}@{domain}"
        traits["email"] = email
    if rng.random() >= {"crm": 0.35, "pos": 0.45, "loyalty": 0.55}[source]:
        digits = person.phone
        if rng.random() < 0.03:
            digits = _digit_typo(rng, digits, start=3)
        traits["phone"] = _format_phone(rng, digits)
    if rng.random() >= 0.15:
        street, city, zip_code = person.address
        if nth > 0 and rng.random() < 0.15:
            street, city, zip_code = world.address()
        if rng.random() < 0.2:
            for long, short in STREET_SUFFIXES.items():
                if street.endswith(long):
                    street = street[: -len(long)] + short
                    break
        if rng.random() < 0.03:
            city = _typo(rng, city)
        if rng.random() < 0.03:
            zip_code = _digit_typo(rng, zip_code)
        traits.update(address=street, city=city, postcode=zip_code)
    return traits


def population(count: int, seed: int = 7) -> list[SourceRecord]:
    """Every source record of `count` people, shuffled, with the person each belongs to."""
    rng = random.Random(seed)
    world = _World(rng, count)
    everyone = _people(count, rng, world)
    records: list[SourceRecord] = []
    counters = dict.fromkeys(SOURCES, 0)
    for person in everyone:
        roll = rng.random()
        k = 1 if roll < 0.6 else 2 if roll < 0.9 else 3
        for nth, source in enumerate(rng.sample(SOURCES, k)):
            counters[source] += 1
            external = f"{source}-{counters[source]:07d}"
            records.append(
                SourceRecord(
                    person.number, source, external, record_of(rng, world, person, source, nth)
                )
            )
    rng.shuffle(records)
    return records
