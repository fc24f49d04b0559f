"""The company profile: validated as a whole, saved only when all of it is right, mirrored to Stripe."""

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, fields

import phonenumbers
import pycountry
from stdnum import util as stdnum_util
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, ValidationError

from billing.accounts.repository import AccountRepository
from billing.company.repository import CompanyRepository, CompanyRow
from billing.db import SessionFactory, read_session, unit_of_work
from billing.errors import DomainError, NotFound, as_named_here
from billing.events import service as events
from billing.payment_methods import customers
from billing.scope import Scope
from billing.stripe_gateway import StripeGateway
from models import Company
from models.types import utcnow

# What "Add funds" needs before the first payment; the rest (VAT id, line 2, region) is optional.
REQUIRED_FIELDS = (
    "legal_name",
    "registration_number",
    "phone",
    "address_line1",
    "city",
    "postal_code",
    "country",
)


@dataclass(frozen=True)
class CompanyInput:
    """Field names match `models.Company`; values are raw user input."""

    legal_name: str
    registration_number: str
    phone: str
    address_line1: str
    city: str
    postal_code: str
    country: str
    address_line2: str | None = None
    region: str | None = None
    vat_id: str | None = None


class InvalidCompanyInput(DomainError):
    """Every bad field at once: (field, what is wrong as a predicate, e.g. "is required")."""

    def __init__(self, field_errors: list[tuple[str, str]]) -> None:
        self.field_errors = field_errors
        super().__init__(self.describe(as_named_here))

    def describe(self, field_name: Callable[[str], str]) -> str:
        """The message for a person, naming each field as `field_name` spells it."""
        return "; ".join(f"{field_name(name)} {why}" for name, why in self.field_errors)


def missing_company_fields(company: Company | CompanyRow | None) -> list[str]:
    """The required fields still empty, in form order (all of them when there is no profile yet)."""
    if company is None:
        return list(REQUIRED_FIELDS)
    return [name for name in REQUIRED_FIELDS if not getattr(company, name)]


# Characters that make a name or an address show as something else (on an invoice, in Stripe, in a partner's
# list) or break the line it is printed on: the explicit text-direction embeddings, overrides and isolates
# (the "Trojan Source" set), and control characters (category Cc: line breaks, tabs, escapes).
_DIRECTION_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _has_hidden_controls(value: str) -> bool:
    return any(char in _DIRECTION_CONTROLS or unicodedata.category(char) == "Cc" for char in value)


def _max_length(name: str) -> int:
    # The column is the one source of the bound.
    return int(Company.__table__.c[name].type.length)  # type: ignore[attr-defined]


def _phone(raw: str, country: str | None) -> str | None:
    """E.164, or None when it is not a valid number (a national number is read in the company's country)."""
    try:
        number = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate(data: CompanyInput) -> dict[str, str | None]:
    """Trimmed, normalised values for every field, or InvalidCompanyInput listing each bad field."""
    errors: list[tuple[str, str]] = []
    clean: dict[str, str | None] = {}
    for item in fields(data):
        value = (getattr(data, item.name) or "").strip()
        if not value:
            if item.name in REQUIRED_FIELDS:
                errors.append((item.name, "is required"))
            clean[item.name] = None
        elif len(value) > _max_length(item.name):
            errors.append((item.name, f"must be at most {_max_length(item.name)} characters"))
        elif _has_hidden_controls(value):
            errors.append((item.name, "must not contain control characters or text-direction overrides"))
        else:
            clean[item.name] = value
    country = clean.get("country")
    if country is not None:
        country = country.upper()
        if pycountry.countries.get(alpha_2=country) is None:
            errors.append(("country", "must be an ISO 3166-1 alpha-2 country code, e.g. 'DE'"))
            country = None
        clean["country"] = country
    phone = clean.get("phone")
    if phone is not None:
        clean["phone"] = _phone(phone, country)
        if clean["phone"] is None:
            errors.append(
                ("phone", "is not a valid phone number (include the country code, e.g. +49 30 123456)")
            )
    vat_id = clean.get("vat_id")
    if vat_id is not None and country in _EU_VAT_PREFIXES:
        clean["vat_id"] = _eu_vat_id(vat_id, _EU_VAT_PREFIXES[country])
        if clean["vat_id"] is None:
            example = f"{_EU_VAT_PREFIXES[country]}123456789" if country != "AT" else "ATU12345678"
            errors.append(("vat_id", f"is not an EU VAT number in its country's format, e.g. {example}"))
    if errors:
        raise InvalidCompanyInput(errors)
    return clean


# The EU's member states, by ISO code, and the prefix of their VAT numbers (Greece's is EL).
_EU_VAT_PREFIXES = {
    code: code
    for code in (
        [
            "AT",
            "BE",
            "BG",
            "CY",
            "CZ",
            "DE",
            "DK",
            "EE",
            "ES",
            "FI",
            "FR",
            "HR",
            "HU",
            "IE",
            "IT",
            "LT",
            "LU",
            "LV",
            "MT",
            "NL",
            "PL",
            "PT",
            "RO",
            "SE",
            "SI",
            "SK",
        ]
    )
} | {"GR": "EL"}


def _eu_vat_id(raw: str, prefix: str) -> str | None:
    """The VAT number compact (e.g. 'DE123456789'; the company's country's prefix added when it has none), or
    None when it is not in the format of the member state it names. Its check digits are not checked: that it
    exists is for VIES to say, and an invoice with a mistyped number is the customer's to correct."""
    number = stdnum_util.clean(raw, " -./,").upper()
    if not number[:2].isalpha():
        number = prefix + number
    try:
        number = eu_vat.compact(number)
        eu_vat.validate(number)
    except InvalidChecksum:
        pass
    except ValidationError:
        return None
    return number


async def save_company(
    factory: SessionFactory, scope: Scope, gateway: StripeGateway, account_id: int, data: CompanyInput
) -> Company:
    """Validate, bring the Stripe customer's name, phone and address along (creating it if needed), save.

    Stripe first, with no connection held: when Stripe is down nothing is saved, and when saving fails
    after Stripe took the new profile, the next save brings Stripe along again.
    """
    values = validate(data)
    async with read_session(factory) as session:
        account = (await AccountRepository(session, scope).by_ids([account_id])).get(account_id)
        if account is None:
            raise NotFound("account not found")
    await customers.push_customer(
        factory, scope, gateway, account, _filled(Company(account_id=account_id), values)
    )
    async with unit_of_work(factory) as session:
        companies = CompanyRepository(session, scope)
        company = await companies.of_account(account_id)
        before = None if company is None else events.snapshot(company, events.CompanyChanged.FIELDS)
        if company is None:
            company = Company(account_id=account_id)
            companies.add(company)
        _filled(company, values).updated_at = utcnow()
        after = events.snapshot(company, events.CompanyChanged.FIELDS)
        if after != before:
            events.record(session, events.CompanyChanged(account_id, before, after))
    return company


def _filled(company: Company, values: dict[str, str | None]) -> Company:
    for name, value in values.items():
        setattr(company, name, value)
    return company
