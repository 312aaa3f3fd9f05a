"""Deterministic demo data: agencies, categories, purposes, persons, sources, clients, logins.

Everything a visitor needs to try a federated lookup end to end. The same ``seed`` always
gives the same persons, identifiers and case records, so a bug seen in one demo can be
replayed in another. Each agency's case records live in its own SQLite file under
``<instance>/sources``: they stand for the agencies' own systems, which the broker reaches
only through a ``sql`` source adapter, never through its own schema.

Seeding is safe to repeat: rows that exist are kept, persons are only inserted into a
database that has none of the demo's, and a client's private key file is kept (only its
issuer is brought up to date).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from broker.cases.models import CaseCapacity
from broker.cases.service import Actor, CaseInput, CaseRegistry
from broker.models import Agency, DataCategory, Purpose, Source
from identity.clients import register_client
from identity.demo import seed_people_clients
from identity.models import (
    Account,
    Client,
    ClientKey,
    IdentityLink,
    Officer,
    OfficerRole,
    Person,
)

#: The demo's "today": records are dated relative to it, never to the clock, so that the
#: same seed gives the same records on any day.
REFERENCE_DATE = date(2025, 6, 30)
TAX_YEARS = (2024, 2023, 2022, 2021)
MAX_PERSONS = 100_000
SOURCE_TIMEOUT_MS = 2000


class DemoSeedError(Exception):
    """The instance cannot be seeded as asked; the message says what to do."""


@dataclass(frozen=True)
class AgencySpec:
    id: str
    name: str
    sector: str
    scheme: str
    #: The column that holds the agency's identifier in its own source database.
    column: str


@dataclass(frozen=True)
class CategorySpec:
    id: str
    name: str
    sensitivity: str
    fields: tuple[str, ...]
    provider: str
    description: str
    create_table: str
    insert: str
    query: str


@dataclass(frozen=True)
class PurposeSpec:
    id: str
    name: str
    description: str
    max_consent_days: int
    break_glass_allowed: bool
    justification_required: bool


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    kind: str
    display_name: str = ""
    agency_id: str = ""
    role: str = ""


AGENCIES: tuple[AgencySpec, ...] = (
    AgencySpec("tax", "Tax Administration", "revenue", "tin", "tin"),
    AgencySpec("health", "Health Service", "health", "nhi", "nhi"),
    AgencySpec("social-services", "Social Services", "social", "client-no", "client_no"),
    AgencySpec("vehicle-registry", "Vehicle Registry", "transport", "licence", "licence"),
)

CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        id="income",
        name="Income",
        sensitivity="high",
        fields=("tax_year", "employer", "gross_income", "taxable_income", "currency"),
        provider="tax",
        description="Declared income per tax year.",
        create_table=(
            "CREATE TABLE income (id INTEGER PRIMARY KEY, tin TEXT NOT NULL, "
            "tax_year INTEGER NOT NULL, employer TEXT NOT NULL, gross_income INTEGER NOT NULL, "
            "taxable_income INTEGER NOT NULL, currency TEXT NOT NULL, UNIQUE (tin, tax_year))"
        ),
        insert=(
            "INSERT INTO income (tin, tax_year, employer, gross_income, taxable_income, currency) "
            "VALUES (:identifier, :tax_year, :employer, :gross_income, :taxable_income, :currency)"
        ),
        query=(
            "SELECT tax_year, employer, gross_income, taxable_income, currency FROM income "
            "WHERE tin = :identifier ORDER BY tax_year DESC"
        ),
    ),
    CategorySpec(
        id="address",
        name="Address",
        sensitivity="medium",
        fields=("street", "postal_code", "city", "since"),
        provider="tax",
        description="Registered addresses, current first.",
        create_table=(
            "CREATE TABLE address (id INTEGER PRIMARY KEY, tin TEXT NOT NULL, "
            "street TEXT NOT NULL, postal_code TEXT NOT NULL, city TEXT NOT NULL, "
            "since TEXT NOT NULL)"
        ),
        insert=(
            "INSERT INTO address (tin, street, postal_code, city, since) "
            "VALUES (:identifier, :street, :postal_code, :city, :since)"
        ),
        query=(
            "SELECT street, postal_code, city, since FROM address "
            "WHERE tin = :identifier ORDER BY since DESC"
        ),
    ),
    CategorySpec(
        id="benefits",
        name="Benefits",
        sensitivity="high",
        fields=("benefit_type", "status", "monthly_amount", "since", "team"),
        provider="social-services",
        description="Social benefits paid or formerly paid, and the team handling each.",
        create_table=(
            "CREATE TABLE benefits (id INTEGER PRIMARY KEY, client_no TEXT NOT NULL, "
            "benefit_type TEXT NOT NULL, status TEXT NOT NULL, monthly_amount INTEGER NOT NULL, "
            "since TEXT NOT NULL, team TEXT NOT NULL)"
        ),
        insert=(
            "INSERT INTO benefits (client_no, benefit_type, status, monthly_amount, since, team) "
            "VALUES (:identifier, :benefit_type, :status, :monthly_amount, :since, :team)"
        ),
        query=(
            "SELECT benefit_type, status, monthly_amount, since, team FROM benefits "
            "WHERE client_no = :identifier ORDER BY since DESC"
        ),
    ),
    CategorySpec(
        id="health.summary",
        name="Health summary",
        sensitivity="special",
        fields=("blood_type", "allergies", "chronic_conditions", "gp_practice", "last_visit"),
        provider="health",
        description="Emergency summary; allergies and conditions are '; '-separated, '' if none.",
        create_table=(
            "CREATE TABLE health_summary (id INTEGER PRIMARY KEY, nhi TEXT NOT NULL UNIQUE, "
            "blood_type TEXT NOT NULL, allergies TEXT NOT NULL, "
            "chronic_conditions TEXT NOT NULL, gp_practice TEXT NOT NULL, "
            "last_visit TEXT NOT NULL)"
        ),
        insert=(
            "INSERT INTO health_summary (nhi, blood_type, allergies, chronic_conditions, "
            "gp_practice, last_visit) VALUES (:identifier, :blood_type, :allergies, "
            ":chronic_conditions, :gp_practice, :last_visit)"
        ),
        query=(
            "SELECT blood_type, allergies, chronic_conditions, gp_practice, last_visit "
            "FROM health_summary WHERE nhi = :identifier"
        ),
    ),
    CategorySpec(
        id="vehicle",
        name="Vehicles",
        sensitivity="low",
        fields=("registration_number", "make", "model", "first_registered", "status"),
        provider="vehicle-registry",
        description="Vehicles registered to the person.",
        create_table=(
            "CREATE TABLE vehicle (id INTEGER PRIMARY KEY, licence TEXT NOT NULL, "
            "registration_number TEXT NOT NULL UNIQUE, make TEXT NOT NULL, "
            "model TEXT NOT NULL, first_registered TEXT NOT NULL, status TEXT NOT NULL)"
        ),
        insert=(
            "INSERT INTO vehicle (licence, registration_number, make, model, "
            "first_registered, status) VALUES (:identifier, :registration_number, :make, "
            ":model, :first_registered, :status)"
        ),
        query=(
            "SELECT registration_number, make, model, first_registered, status FROM vehicle "
            "WHERE licence = :identifier ORDER BY first_registered DESC"
        ),
    ),
)

#: Indexes on the identifier columns, so a lookup in a source does not scan its table.
SOURCE_INDEXES: dict[str, str] = {
    "income": "CREATE INDEX ix_income_tin ON income (tin)",
    "address": "CREATE INDEX ix_address_tin ON address (tin)",
    "benefits": "CREATE INDEX ix_benefits_client_no ON benefits (client_no)",
    "vehicle": "CREATE INDEX ix_vehicle_licence ON vehicle (licence)",
}

PURPOSES: tuple[PurposeSpec, ...] = (
    PurposeSpec(
        "benefit-eligibility",
        "Benefit eligibility",
        "Deciding whether a person is entitled to a benefit and at what rate.",
        365,
        False,
        False,
    ),
    PurposeSpec(
        "child-protection",
        "Child protection",
        "Assessing and acting on a risk to a child.",
        180,
        True,
        True,
    ),
    PurposeSpec(
        "emergency-care",
        "Emergency care",
        "Treating a person who cannot consent, in an emergency.",
        30,
        True,
        True,
    ),
    PurposeSpec(
        "tax-assessment",
        "Tax assessment",
        "Assessing a person's tax liability.",
        365,
        False,
        False,
    ),
    PurposeSpec(
        "road-safety",
        "Road safety",
        "Enforcing road-safety rules on a vehicle's keeper.",
        90,
        False,
        True,
    ),
)

#: The registry's French names and descriptions (``labels``), for the portal and notices.
FRENCH: dict[str, dict[str, tuple[str, str]]] = {
    "agency": {
        "tax": ("Administration fiscale", ""),
        "health": ("Service de santé", ""),
        "social-services": ("Services sociaux", ""),
        "vehicle-registry": ("Registre des véhicules", ""),
    },
    "category": {
        "income": ("Revenus", "Revenus déclarés par année d'imposition."),
        "address": ("Adresse", "Adresses enregistrées, la plus récente d'abord."),
        "benefits": (
            "Prestations",
            "Prestations sociales versées ou passées, et l'équipe qui suit chacune.",
        ),
        "health.summary": (
            "Résumé de santé",
            "Résumé d'urgence ; allergies et pathologies séparées par « ; », vide si aucune.",
        ),
        "vehicle": ("Véhicules", "Véhicules immatriculés au nom de la personne."),
    },
    "purpose": {
        "benefit-eligibility": (
            "Droit aux prestations",
            "Décider si une personne a droit à une prestation, et à quel taux.",
        ),
        "child-protection": (
            "Protection de l'enfance",
            "Évaluer un danger pour un enfant et y répondre.",
        ),
        "emergency-care": (
            "Soins d'urgence",
            "Soigner une personne qui ne peut pas consentir, en urgence.",
        ),
        "tax-assessment": ("Calcul de l'impôt", "Établir l'impôt dû par une personne."),
        "road-safety": (
            "Sécurité routière",
            "Faire respecter les règles de sécurité routière au détenteur d'un véhicule.",
        ),
    },
    "capacity": {
        "applicant": ("Demandeur", "A demandé une prestation ou un service en cours de décision."),
        "beneficiary": ("Bénéficiaire", "Reçoit une prestation ou un service."),
        "child-in-care": ("Enfant pris en charge", "Un enfant que l'agence protège ou accueille."),
        "taxpayer": ("Contribuable", "Redevable de l'impôt dans un calcul en cours ou revu."),
        "patient": ("Patient", "Soigné par le service de santé."),
        "vehicle-keeper": ("Détenteur du véhicule", "Détient un véhicule immatriculé examiné."),
    },
}


def french_labels(kind: str, key: str) -> dict[str, Any] | None:
    """The ``labels`` value of a demo registry row: its French name and description."""
    name, description = FRENCH[kind].get(key, ("", ""))
    if not name:
        return None
    return {"fr": {"name": name, **({"description": description} if description else {})}}


#: Known passwords, for the demo only: seeding refuses production instances for this reason.
#: What the demo's case-management clients may do: look up, register their cases, ask for
#: consent.
CLIENT_SCOPES = ("lookup", "cases", "consent")

CAPACITIES: tuple[tuple[str, str, str], ...] = (
    ("applicant", "Applicant", "Has applied for a benefit or service that is being decided."),
    ("beneficiary", "Beneficiary", "Receives a benefit or service."),
    ("child-in-care", "Child in care", "A child the agency is protecting or caring for."),
    ("taxpayer", "Taxpayer", "Liable to tax in an assessment being made or reviewed."),
    ("patient", "Patient", "Being treated by the health service."),
    ("vehicle-keeper", "Vehicle keeper", "Keeps a registered vehicle under review."),
)


@dataclass(frozen=True)
class CasePlan:
    """Which persons an agency has a case on: every ``every``-th but those where index % every
    equals ``skip``; so the demo has persons with and without a case at each agency."""

    agency: str
    prefix: str
    capacities: tuple[str, ...]
    purposes: tuple[str, ...]
    team: str
    every: int
    skip: int


CASE_PLANS: tuple[CasePlan, ...] = (
    CasePlan(
        "social-services",
        "SS-CASE",
        ("applicant", "beneficiary"),
        ("benefit-eligibility",),
        "benefits-north",
        5,
        4,
    ),
    CasePlan("tax", "TAX-CASE", ("taxpayer",), ("tax-assessment",), "assessment-2", 3, 2),
    CasePlan("health", "HS-CASE", ("patient",), ("emergency-care",), "emergency", 4, 3),
    CasePlan(
        "vehicle-registry", "VR-CASE", ("vehicle-keeper",), ("road-safety",), "road-safety", 2, 1
    ),
)

DEMO_LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin(
        "officer", "officer-demo-2026", "officer", "Claire Martin", "social-services", "caseworker"
    ),
    DemoLogin(
        "auditor", "auditor-demo-2026", "officer", "Samuel Okafor", "social-services", "auditor"
    ),
    DemoLogin("citizen", "citizen-demo-2026", "citizen"),
)

GIVEN_NAMES = (
    "Amélie", "Aisha", "Antoine", "Arthur", "Benjamin", "Camille", "Chloé", "Daniel", "Elena",
    "Emma", "Fatima", "Gabriel", "Grace", "Hannah", "Hugo", "Ibrahim", "Inès", "Julien", "Karim",
    "Léa", "Liam", "Louis", "Lucas", "Mathis", "Maya", "Mei", "Nadia", "Noah", "Olivier", "Owen",
    "Priya", "Rosa", "Sofia", "Théo", "Thomas", "Victor", "Yasmin", "Zoé",
)  # fmt: skip
FAMILY_NAMES = (
    "Bernard", "Bouchard", "Brown", "Côté", "David", "Davies", "Dubois", "Durand", "Evans",
    "Fournier", "Gagnon", "Garcia", "Haddad", "Johnson", "Jones", "Kowalski", "Laurent",
    "Lefebvre", "Leroy", "Martin", "Michel", "Moreau", "Nguyen", "Okafor", "Petit", "Richard",
    "Robert", "Rossi", "Roux", "Roy", "Simon", "Smith", "Taylor", "Tremblay", "Vincent",
    "Walker", "Williams", "Wilson",
)  # fmt: skip
STREETS = (
    "Rue des Lilas", "Maple Avenue", "Chemin du Moulin", "High Street", "Rue Victor Hugo",
    "Station Road", "Avenue des Pins", "Church Lane", "Boulevard de la Mer", "Park Road",
    "Rue de l'Église", "Mill Lane", "Allée des Cerisiers", "Harbour View",
)  # fmt: skip
#: Fictional towns and the first three digits of their postal codes.
CITIES = (
    ("Northbridge", 101), ("Lakeside", 102), ("Saint-Aubin-sur-Lac", 205), ("Riverton", 310),
    ("Beaumont-le-Vieux", 415), ("Eastfield", 520), ("Port-Clément", 630), ("Westmoor", 740),
)  # fmt: skip
EMPLOYERS = (
    "Northbridge City Council", "Lakeside General Hospital", "Atlas Logistics",
    "Boulangerie Moreau", "Riverton School Board", "Helix Software", "Port-Clément Shipyard",
    "Green Valley Farms", "Beaumont Retail Group", "Eastfield Engineering", "Self-employed",
)  # fmt: skip
PENSION_PAYER = "State Pension Fund"
RETIREMENT_AGE = 67
GP_PRACTICES = (
    "Northbridge Family Practice", "Lakeside Medical Centre", "Cabinet médical des Tilleuls",
    "Riverton Health Group", "Maison de santé Beaumont", "Westmoor Surgery",
)  # fmt: skip
BLOOD_TYPES = (
    ("O+", 38), ("A+", 34), ("B+", 9), ("AB+", 3), ("O-", 7), ("A-", 6), ("B-", 2), ("AB-", 1),
)  # fmt: skip
ALLERGIES = ("penicillin", "peanuts", "latex", "pollen", "shellfish", "aspirin", "bee stings")
CHRONIC_CONDITIONS = (
    "asthma", "type 2 diabetes", "hypertension", "epilepsy", "coeliac disease", "COPD",
    "hypothyroidism",
)  # fmt: skip
#: Benefit types and their monthly amount ranges, in whole currency units.
BENEFITS = (
    ("housing-allowance", 180, 520), ("unemployment", 650, 1400), ("disability", 700, 1250),
    ("child-benefit", 120, 460), ("family-support", 150, 390), ("carer-allowance", 280, 420),
)  # fmt: skip
BENEFIT_STATUSES = (("active", 70), ("suspended", 10), ("ended", 20))
TEAMS = (
    "North district team", "Lakeside family team", "Riverton adult services",
    "Eastfield intake team",
)  # fmt: skip
VEHICLES = (
    ("Renault", "Clio"), ("Peugeot", "208"), ("Toyota", "Yaris"), ("Volkswagen", "Golf"),
    ("Ford", "Focus"), ("Citroën", "C3"), ("Tesla", "Model 3"), ("Skoda", "Octavia"),
    ("Dacia", "Sandero"), ("Nissan", "Leaf"),
)  # fmt: skip
VEHICLE_STATUSES = (("registered", 80), ("off-road", 10), ("deregistered", 10))
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class SeedPerson:
    """One synthetic person: who they are, their identifier at each agency, their records."""

    id: uuid.UUID
    given_name: str
    family_name: str
    birth_date: date
    identifiers: dict[str, str]
    records: dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class LinkedIdentifier:
    agency_id: str
    scheme: str
    value: str


@dataclass(frozen=True)
class SeedResult:
    """What the demo prints: where things are and who to try them with."""

    persons_created: bool
    seed_matches: bool
    person_count: int
    citizen_name: str
    citizen_identifiers: tuple[LinkedIdentifier, ...]
    without_benefits: LinkedIdentifier | None
    key_files: dict[str, Path]
    source_files: dict[str, Path]
    #: A person social services has no case on: lookups about them are denied.
    without_case: LinkedIdentifier | None = None
    logins: tuple[DemoLogin, ...] = DEMO_LOGINS


@dataclass
class _Seeding:
    session: Session
    instance: Path
    issuer: str
    population: list[SeedPerson]
    persons_created: bool = False
    seed_matches: bool = True
    key_files: dict[str, Path] = field(default_factory=dict)
    source_files: dict[str, Path] = field(default_factory=dict)


# --- generation: pure, no I/O -------------------------------------------------------------


def _weighted(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _day_between(rng: random.Random, start: date, end: date) -> date:
    return date.fromordinal(rng.randint(start.toordinal(), end.toordinal()))


def _age(birth_date: date) -> int:
    before_birthday = (REFERENCE_DATE.month, REFERENCE_DATE.day) < (
        birth_date.month,
        birth_date.day,
    )
    return REFERENCE_DATE.year - birth_date.year - before_birthday


def _nhi(n: int) -> str:
    """Two letters and six digits, e.g. ``NHI-AB123456``, from a number below 26*26*10**6."""
    letters, digits = divmod(n, 1_000_000)
    return f"NHI-{LETTERS[letters // 26]}{LETTERS[letters % 26]}{digits:06d}"


def _identifiers(rng: random.Random, count: int) -> dict[str, list[str]]:
    """Distinct identifiers per scheme, drawn without replacement so none collide."""
    return {
        "tax": [f"TIN-{n}" for n in rng.sample(range(1_000_000, 10_000_000), count)],
        "health": [_nhi(n) for n in rng.sample(range(26 * 26 * 1_000_000), count)],
        "social-services": [f"SS-{n:06d}" for n in rng.sample(range(1, 1_000_000), count)],
        "vehicle-registry": [f"DL-{n}" for n in rng.sample(range(10_000_000, 100_000_000), count)],
    }


def _plates(rng: random.Random, count: int) -> list[str]:
    """Distinct registration numbers like ``AB-123-CD``."""
    plates = []
    for n in rng.sample(range(26**4 * 1000), count):
        letters, digits = divmod(n, 1000)
        a, b, c, d = (letters // 26**i % 26 for i in (3, 2, 1, 0))
        plates.append(f"{LETTERS[a]}{LETTERS[b]}-{digits:03d}-{LETTERS[c]}{LETTERS[d]}")
    return plates


def _income(rng: random.Random, birth_date: date, employed: bool) -> list[dict[str, Any]]:
    retired = _age(birth_date) >= RETIREMENT_AGE
    if not (employed or retired):
        return []
    employer = PENSION_PAYER if retired else rng.choice(EMPLOYERS)
    gross = rng.randint(140, 320) * 100 if retired else rng.randint(190, 950) * 100
    rows = []
    for year in TAX_YEARS[: rng.randint(2, len(TAX_YEARS))]:
        rows.append(
            {
                "tax_year": year,
                "employer": employer,
                "gross_income": gross,
                "taxable_income": max(0, gross - 11_000),
                "currency": "EUR",
            }
        )
        gross = int(round(gross / (1 + rng.uniform(0.0, 0.05)), -2))
    return rows


def _addresses(rng: random.Random, birth_date: date) -> list[dict[str, Any]]:
    adult_from = date(birth_date.year + 18, birth_date.month, 1)
    moves = 2 if rng.random() < 0.3 else 1
    dates = sorted(_day_between(rng, adult_from, REFERENCE_DATE) for _ in range(moves))
    rows = []
    for since in dates:
        city, prefix = rng.choice(CITIES)
        rows.append(
            {
                "street": f"{rng.randint(1, 180)} {rng.choice(STREETS)}",
                "postal_code": f"{prefix:03d}{rng.randrange(100):02d}",
                "city": city,
                "since": since.isoformat(),
            }
        )
    return rows


def _health(rng: random.Random) -> list[dict[str, Any]]:
    allergies = rng.sample(ALLERGIES, rng.choice((0, 0, 0, 1, 1, 2)))
    conditions = rng.sample(CHRONIC_CONDITIONS, rng.choice((0, 0, 0, 0, 1, 1, 2)))
    last_visit = _day_between(rng, REFERENCE_DATE - timedelta(days=900), REFERENCE_DATE)
    return [
        {
            "blood_type": _weighted(rng, BLOOD_TYPES),
            "allergies": "; ".join(sorted(allergies)),
            "chronic_conditions": "; ".join(sorted(conditions)),
            "gp_practice": rng.choice(GP_PRACTICES),
            "last_visit": last_visit.isoformat(),
        }
    ]


def _benefits(rng: random.Random, employed: bool, always: bool) -> list[dict[str, Any]]:
    if not always and rng.random() >= (0.8 if not employed else 0.2):
        return []
    kinds = [b for b in BENEFITS if not (employed and b[0] == "unemployment")]
    rows = []
    for kind, low, high in rng.sample(kinds, rng.choice((1, 1, 2))):
        since = _day_between(rng, date(2015, 1, 1), REFERENCE_DATE - timedelta(days=30))
        rows.append(
            {
                "benefit_type": kind,
                "status": "active" if always else _weighted(rng, BENEFIT_STATUSES),
                "monthly_amount": rng.randint(low, high),
                "since": since.isoformat(),
                "team": rng.choice(TEAMS),
            }
        )
    return rows


def _vehicles(rng: random.Random, plates: list[str], always: bool) -> list[dict[str, Any]]:
    if not always and rng.random() >= 0.55:
        return []
    rows = []
    for _ in range(2 if rng.random() < 0.25 else 1):
        make, model = rng.choice(VEHICLES)
        first = _day_between(rng, date(2008, 1, 1), REFERENCE_DATE)
        rows.append(
            {
                "registration_number": plates.pop(),
                "make": make,
                "model": model,
                "first_registered": first.isoformat(),
                "status": "registered" if always else _weighted(rng, VEHICLE_STATUSES),
            }
        )
    return rows


def generate_population(seed: int, count: int) -> list[SeedPerson]:
    """The same ``seed`` and ``count`` always give the same persons, identifiers and records.

    The first person has a record in every category, so the demo citizen shows data
    everywhere; others have no benefits or vehicle, so lookups can come back not found.
    """
    if not 1 <= count <= MAX_PERSONS:
        raise DemoSeedError(f"the demo seeds between 1 and {MAX_PERSONS} persons, not {count}")
    rng = random.Random(seed)
    identifiers = _identifiers(rng, count)
    plates = _plates(rng, 2 * count)
    people = []
    for index in range(count):
        birth_date = _day_between(rng, date(1940, 1, 1), date(2006, 12, 31))
        employed = index == 0 or rng.random() < 0.85
        people.append(
            SeedPerson(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                given_name=rng.choice(GIVEN_NAMES),
                family_name=rng.choice(FAMILY_NAMES),
                birth_date=birth_date,
                identifiers={agency: values[index] for agency, values in identifiers.items()},
                records={
                    "income": _income(rng, birth_date, employed),
                    "address": _addresses(rng, birth_date),
                    "health.summary": _health(rng),
                    "benefits": _benefits(rng, employed, always=index == 0),
                    "vehicle": _vehicles(rng, plates, always=index == 0),
                },
            )
        )
    return people


# --- seeding steps: database and instance folder -------------------------------------------


def _seed_registry(state: _Seeding) -> None:
    """Agencies, categories and purposes; rows that exist are kept as they are (only French
    labels are added where a row from an older demo has none)."""
    session = state.session
    for agency in AGENCIES:
        if session.get(Agency, agency.id) is None:
            session.add(Agency(id=agency.id, name=agency.name, sector=agency.sector))
    for category in CATEGORIES:
        if session.get(DataCategory, category.id) is None:
            session.add(
                DataCategory(
                    id=category.id,
                    name=category.name,
                    description=category.description,
                    sensitivity=category.sensitivity,
                    fields=list(category.fields),
                )
            )
    for purpose in PURPOSES:
        if session.get(Purpose, purpose.id) is None:
            session.add(
                Purpose(
                    id=purpose.id,
                    name=purpose.name,
                    description=purpose.description,
                    max_consent_days=purpose.max_consent_days,
                    break_glass_allowed=purpose.break_glass_allowed,
                    justification_required=purpose.justification_required,
                )
            )
    session.flush()
    for kind, model in (("agency", Agency), ("category", DataCategory), ("purpose", Purpose)):
        for key in FRENCH[kind]:
            row = session.get(model, key)
            if row is not None and row.labels is None:
                row.labels = french_labels(kind, key)
    session.flush()


def _seeded_tins(session: Session) -> set[str]:
    query = select(IdentityLink.value).where(
        IdentityLink.agency_id == "tax", IdentityLink.scheme == "tin"
    )
    return set(session.scalars(query))


def _seed_persons(state: _Seeding) -> None:
    """Insert persons and links in bulk, unless the database already holds a demo seed."""
    existing = _seeded_tins(state.session)
    if existing:
        state.seed_matches = existing == {p.identifiers["tax"] for p in state.population}
        return
    state.session.execute(
        insert(Person),
        [
            {
                "id": p.id,
                "given_name": p.given_name,
                "family_name": p.family_name,
                "birth_date": p.birth_date,
            }
            for p in state.population
        ],
    )
    state.session.execute(
        insert(IdentityLink),
        [
            {"person_id": p.id, "agency_id": a.id, "scheme": a.scheme, "value": p.identifiers[a.id]}
            for p in state.population
            for a in AGENCIES
        ],
    )
    state.persons_created = True


def _write_source_database(path: Path, agency: AgencySpec, population: list[SeedPerson]) -> None:
    """Build the file under a temporary name and rename it, so a crash leaves no half file."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    connection = sqlite3.connect(partial)
    try:
        with connection:
            for category in CATEGORIES:
                if category.provider != agency.id:
                    continue
                connection.execute(category.create_table)
                if category.id in SOURCE_INDEXES:
                    connection.execute(SOURCE_INDEXES[category.id])
                connection.executemany(
                    category.insert,
                    (
                        {"identifier": person.identifiers[agency.id], **record}
                        for person in population
                        for record in person.records[category.id]
                    ),
                )
    finally:
        connection.close()
    os.replace(partial, path)


def _source_config(path: Path, agency: AgencySpec) -> dict[str, Any]:
    return {
        "url": f"sqlite:///{path}",
        "identifier_scheme": agency.scheme,
        "queries": {c.id: c.query for c in CATEGORIES if c.provider == agency.id},
    }


def _seed_sources(state: _Seeding) -> None:
    """One source database and one ``sql`` source per providing agency."""
    folder = state.instance / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    for agency in AGENCIES:
        categories = [c.id for c in CATEGORIES if c.provider == agency.id]
        if not categories:
            continue
        path = folder / f"{agency.id}.db"
        if not path.exists():
            if not state.seed_matches:
                raise DemoSeedError(
                    f"{path} is missing and the database holds persons from another --seed or "
                    "--persons; rerun with those options or start from an empty database"
                )
            _write_source_database(path, agency, state.population)
        source_id = f"{agency.id}-db"
        if state.session.get(Source, source_id) is None:
            state.session.add(
                Source(
                    id=source_id,
                    agency_id=agency.id,
                    adapter="sql",
                    config=_source_config(path, agency),
                    timeout_ms=SOURCE_TIMEOUT_MS,
                    categories=[state.session.get(DataCategory, c) for c in categories],
                )
            )
        state.source_files[source_id] = path


def _read_key_file(path: Path) -> tuple[dict[str, Any], ECKey] | None:
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
        return document, ECKey.import_key(document["key"])
    except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
        raise DemoSeedError(f"{path} is not a readable client key file ({exc})") from None


def _write_private_file(path: Path, document: dict[str, Any]) -> None:
    """Private keys are readable by their owner only (0600), from the first byte written."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(partial, path)


def _key_document(client_id: str, issuer: str, key: ECKey) -> dict[str, Any]:
    private = key.as_dict(private=True)
    private.update({"kid": key.thumbprint(), "alg": "ES256", "use": "sig"})
    return {"client_id": client_id, "issuer": issuer, "key": private}


def _public_jwk(key: ECKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    public.update({"kid": key.thumbprint(), "alg": "ES256", "use": "sig"})
    return public


def _seed_client(state: _Seeding, agency: AgencySpec, path: Path) -> None:
    """Keep an existing key file and client; register the file's key if the client lacks it.

    The file is rewritten (same key) only when the issuer it names is no longer the
    broker's, so a client tool reading it addresses the right audience.
    """
    client_id = f"{agency.id}-cms"
    stored = _read_key_file(path)
    if stored is None:
        on_disk: dict[str, Any] = {}
        key = ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"}, auto_kid=True)
    else:
        on_disk, key = stored
    public = _public_jwk(key)
    client = state.session.get(Client, client_id)
    if client is None:
        register_client(
            state.session,
            client_id=client_id,
            agency_id=agency.id,
            name=f"{agency.name} case management",
            jwks=[public],
            scope=" ".join(CLIENT_SCOPES),
        )
    else:
        if all(k.thumbprint != public["kid"] for k in client.keys):
            client.keys.append(ClientKey(kid=public["kid"], thumbprint=public["kid"], jwk=public))
        granted = client.scope.split()
        client.scope = " ".join(granted + [s for s in CLIENT_SCOPES if s not in granted])
    if on_disk.get("issuer") != state.issuer:
        _write_private_file(path, _key_document(client_id, state.issuer, key))


def _seed_clients(state: _Seeding) -> None:
    """A case-management client per agency, its private key in ``<instance>/clients``."""
    folder = state.instance / "clients"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for agency in AGENCIES:
        path = folder / f"{agency.id}.json"
        _seed_client(state, agency, path)
        state.key_files[agency.id] = path
    state.session.flush()


def _citizen_person_id(state: _Seeding) -> uuid.UUID:
    """The first seeded person; for a database seeded otherwise, its lowest TIN."""
    first = state.population[0].identifiers["tax"]
    query = select(IdentityLink.person_id).where(
        IdentityLink.agency_id == "tax", IdentityLink.scheme == "tin"
    )
    found = state.session.scalar(query.where(IdentityLink.value == first))
    return found or state.session.scalars(query.order_by(IdentityLink.value)).first()


def _seed_accounts(state: _Seeding) -> None:
    """The demo logins, with argon2id password hashes; existing usernames are kept."""
    hasher = PasswordHasher()
    for login in DEMO_LOGINS:
        if state.session.scalar(select(Account).where(Account.username == login.username)):
            continue
        account = Account(
            username=login.username, password_hash=hasher.hash(login.password), kind=login.kind
        )
        if login.kind == "citizen":
            account.person_id = _citizen_person_id(state)
        else:
            officer = Officer(
                id=uuid.uuid4(),
                agency_id=login.agency_id,
                display_name=login.display_name,
                roles=[OfficerRole(role=login.role)],
            )
            state.session.add(officer)
            state.session.flush()
            account.officer_id = officer.id
        state.session.add(account)
    state.session.flush()


def _case_inputs(state: _Seeding, plan: CasePlan, officer: str | None) -> list[CaseInput]:
    scheme = next(a.scheme for a in AGENCIES if a.id == plan.agency)
    inputs = []
    for index, person in enumerate(state.population):
        if index % plan.every == plan.skip:
            continue
        assigned = (officer,) if officer and index == 0 else ()
        inputs.append(
            CaseInput(
                reference=f"{plan.prefix}-{index + 1:05d}",
                scheme=scheme,
                value=person.identifiers[plan.agency],
                capacity=plan.capacities[index % len(plan.capacities)],
                purposes=plan.purposes,
                starts_on=date(2025, 1, 1) + timedelta(days=index % 300),
                officers=assigned,
                teams=(plan.team,),
            )
        )
    return inputs


def _seed_cases(state: _Seeding) -> None:
    """Capacities, and open cases on part of the persons at each agency (the demo caseworker
    is assigned to the citizen's social-services case); registered cases are kept."""
    session = state.session
    for capacity_id, name, description in CAPACITIES:
        row = session.get(CaseCapacity, capacity_id)
        if row is None:
            session.add(
                CaseCapacity(
                    id=capacity_id,
                    name=name,
                    description=description,
                    labels=french_labels("capacity", capacity_id),
                )
            )
        elif row.labels is None:
            row.labels = french_labels("capacity", capacity_id)
    session.flush()
    if not state.seed_matches:
        return
    officer = session.scalar(
        select(Account.officer_id).where(Account.username == DEMO_LOGINS[0].username)
    )
    for plan in CASE_PLANS:
        registry = CaseRegistry(session, Actor(plan.agency, channel="demo"))
        inputs = _case_inputs(
            state, plan, str(officer) if plan.agency == "social-services" and officer else None
        )
        known = registry.registered([i.reference for i in inputs])
        persons = {
            (scheme, value): person_id
            for scheme, value, person_id in session.execute(
                select(IdentityLink.scheme, IdentityLink.value, IdentityLink.person_id).where(
                    IdentityLink.agency_id == plan.agency
                )
            )
        }
        registry.add_checked(
            [(i, persons[(i.scheme, i.value)]) for i in inputs if i.reference not in known]
        )
    session.flush()


def _without_case(state: _Seeding) -> LinkedIdentifier | None:
    if not state.seed_matches:
        return None
    plan = CASE_PLANS[0]
    for index, person in enumerate(state.population):
        if index % plan.every == plan.skip:
            return LinkedIdentifier(plan.agency, "client-no", person.identifiers[plan.agency])
    return None


def _seed_desk_clients(state: _Seeding) -> None:
    """An officer desk client per agency (code flow, DPoP, pairwise subjects), its key in
    ``<instance>/clients/<agency>-desk.json``."""
    seed_people_clients(state.session, state.instance, state.issuer)


#: The seeding steps, in order: each depends only on the ones before it.
SEED_STEPS: tuple[tuple[str, Callable[[_Seeding], None]], ...] = (
    ("agencies, categories and purposes", _seed_registry),
    ("persons and identity links", _seed_persons),
    ("agency source databases", _seed_sources),
    ("agency clients and keys", _seed_clients),
    ("demo logins", _seed_accounts),
    ("open cases", _seed_cases),
    ("officer desk clients", _seed_desk_clients),
)


def _citizen_identifiers(session: Session) -> tuple[str, tuple[LinkedIdentifier, ...]]:
    account = session.scalar(select(Account).where(Account.username == "citizen"))
    person = session.get(Person, account.person_id)
    order = [a.id for a in AGENCIES]
    links = sorted(
        session.scalars(select(IdentityLink).where(IdentityLink.person_id == person.id)),
        key=lambda link: order.index(link.agency_id) if link.agency_id in order else len(order),
    )
    identifiers = tuple(LinkedIdentifier(x.agency_id, x.scheme, x.value) for x in links)
    return f"{person.given_name} {person.family_name}", identifiers


def _without_benefits(state: _Seeding) -> LinkedIdentifier | None:
    if not state.seed_matches:
        return None
    for person in state.population:
        if not person.records["benefits"]:
            return LinkedIdentifier(
                "social-services", "client-no", person.identifiers["social-services"]
            )
    return None


def seed_demo(
    session: Session,
    instance: Path,
    issuer: str,
    seed: int = 1,
    persons: int = 1000,
    on_step: Callable[[int, str], None] | None = None,
) -> SeedResult:
    """Seed the demo into ``session`` (the caller commits) and ``instance``; safe to repeat.

    ``on_step(done, label)`` is called before each step, for a progress display.
    """
    state = _Seeding(session, instance, issuer, generate_population(seed, persons))
    for done, (label, step) in enumerate(SEED_STEPS):
        if on_step is not None:
            on_step(done, label)
        step(state)
    citizen_name, citizen_identifiers = _citizen_identifiers(session)
    count = session.scalar(
        select(func.count()).select_from(IdentityLink).where(IdentityLink.agency_id == "tax")
    )
    return SeedResult(
        persons_created=state.persons_created,
        seed_matches=state.seed_matches,
        person_count=count or 0,
        citizen_name=citizen_name,
        citizen_identifiers=citizen_identifiers,
        without_benefits=_without_benefits(state),
        without_case=_without_case(state),
        key_files=state.key_files,
        source_files=state.source_files,
    )
