"""Exchange rates: the European Central Bank's reference rates, and USD equivalents of balances.

An operator loads the ECB's XML (eurofxref-daily.xml, eurofxref-hist-90d.xml, eurofxref-hist.xml: units of
each currency per 1 EUR, one set per business day) into `fx_rate`; nothing is fetched at run time.
"""

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import money
from billing.errors import DomainError
from billing.fx.repository import FxRepository
from models import FxRate

GESMES_NS = "http://www.gesmes.org/xml/2002-08-01"
ECB_NS = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
_ENVELOPE = f"{{{GESMES_NS}}}Envelope"
_CUBE = f"{{{ECB_NS}}}Cube"

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")
# The ECB publishes plain positive decimals ("1.0812", "162.45"); anything else is not a rate we trust.
_RATE = re.compile(r"\d{1,20}(\.\d{1,10})?")

# A cross rate is a quotient that rarely terminates: 12 significant digits keeps it readable and exact to well
# under a minor unit on any balance, and a fixed context makes it independent of the caller's decimal context.
CROSS_RATE_CONTEXT = Context(prec=12, rounding=ROUND_HALF_EVEN)

FETCH_TIMEOUT_SECONDS = 30.0

Rate = tuple[date, str, Decimal]


class FxFileError(DomainError):
    """The rates file or URL could not be read, or is not in the ECB reference-rate format."""


@dataclass(frozen=True)
class UsdEquivalent:
    amount_minor: int
    rate: Decimal  # USD per 1 unit of the account's currency
    rate_date: date
    source: str = "ECB"  # whose reference rate it is: every rate here is loaded from the ECB's files


class _RejectDoctype(ET.TreeBuilder):
    """ECB files have no DTD; refusing one rules out entity expansion ("billion laughs") and external ones."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise FxFileError("rates file declares a DOCTYPE; ECB reference-rate files have none")


def _parse_xml(data: bytes) -> ET.Element:
    # defusedxml is not a dependency. xml.etree never fetches external entities, and _RejectDoctype stops
    # parsing at any DOCTYPE, before an entity could be declared or expanded.
    parser = ET.XMLParser(target=_RejectDoctype())
    try:
        parser.feed(data)
        root: ET.Element = parser.close()
    except ET.ParseError as error:
        raise FxFileError(f"rates file is not well-formed XML: {error}") from None
    return root


def _parse_date(text: str | None) -> date:
    if text is None or not _DATE.fullmatch(text):
        raise FxFileError(f"rates file has a day without a valid time='YYYY-MM-DD' (got {text!r})")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FxFileError(f"rates file has an impossible date {text!r}") from None


def _parse_rate(day: date, currency: str | None, text: str | None) -> tuple[str, Decimal]:
    if currency is None or not _CURRENCY.fullmatch(currency) or currency == "EUR":
        raise FxFileError(f"rates file has an invalid currency {currency!r} on {day}")
    if text is None or not _RATE.fullmatch(text) or Decimal(text) == 0:
        raise FxFileError(f"rates file has an invalid {currency} rate {text!r} on {day}")
    return currency, Decimal(text)


def parse_ecb_xml(data: bytes) -> list[Rate]:
    """(day, currency, units per 1 EUR) for every rate in a daily or historical ECB reference-rate file."""
    root = _parse_xml(data)
    if root.tag != _ENVELOPE:
        raise FxFileError(f"not an ECB reference-rate file: root element is {root.tag!r}")
    days = root.findall(f"./{_CUBE}/{_CUBE}")
    if not days:
        raise FxFileError("rates file has no days of rates (Envelope > Cube > Cube time=...)")
    found: dict[tuple[date, str], Decimal] = {}
    for day_element in days:
        day = _parse_date(day_element.get("time"))
        cubes = day_element.findall(_CUBE)
        if not cubes:
            raise FxFileError(f"rates file has no rates on {day}")
        for cube in cubes:
            currency, rate = _parse_rate(day, cube.get("currency"), cube.get("rate"))
            previous = found.setdefault((day, currency), rate)
            if previous != rate:
                raise FxFileError(f"rates file has two different {currency} rates on {day}")
    return [(day, currency, rate) for (day, currency), rate in found.items()]


async def load_rates(session: AsyncSession, rows: Iterable[Rate]) -> int:
    """Insert new rates and correct changed ones; returns how many rows changed (0 when already loaded)."""
    wanted = {(day, currency): rate for day, currency, rate in rows}
    if not wanted:
        return 0
    days = [day for day, _ in wanted]
    repository = FxRepository(session)
    existing = {(row.rate_date, row.currency): row for row in await repository.between(min(days), max(days))}
    changed: list[FxRate] = []
    for (day, currency), rate in wanted.items():
        row = existing.get((day, currency))
        if row is None:
            changed.append(FxRate(currency=currency, rate_date=day, per_eur=str(rate)))
        elif row.per_eur_decimal != rate:
            row.per_eur = str(rate)
            changed.append(row)
    await repository.save(changed)
    return len(changed)


async def _read_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=True) as client:
                response = await client.get(source)
                response.raise_for_status()
                return response.content
        except httpx.HTTPError as error:
            raise FxFileError(f"could not fetch {source}: {error}") from None
    try:
        return await asyncio.to_thread(Path(source).read_bytes)
    except OSError as error:
        raise FxFileError(f"could not read {source}: {error.strerror or error}") from None


async def load_file_or_url(session: AsyncSession, source: str) -> int:
    """Load an ECB file from a path, or from an http(s) URL when an operator asks; returns rows changed."""
    return await load_rates(session, parse_ecb_xml(await _read_source(source)))


async def usd_equivalents(
    session: AsyncSession, currencies: set[str], on: date | None = None
) -> dict[str, tuple[Decimal, date]]:
    """USD per unit of each currency, and the day of the rates, from the latest day <= `on` with both rates.

    One SQL statement for any number of currencies. EUR is the ECB's base, so its rate is the USD row itself;
    USD's own row (USD per USD = 1) carries it. Currencies without a rate are absent.
    """
    if not currencies:
        return {}
    lookup = (currencies - {"EUR"}) | ({"USD"} if "EUR" in currencies else set())
    rows = await FxRepository(session).latest_with_usd(lookup, on)
    result: dict[str, tuple[Decimal, date]] = {}
    for currency, rate_date, per_eur, usd_per_eur in rows:
        usd_rate = Decimal(usd_per_eur)
        if currency in currencies:
            result[currency] = (CROSS_RATE_CONTEXT.divide(usd_rate, Decimal(per_eur)), rate_date)
        if currency == "USD" and "EUR" in currencies:
            result["EUR"] = (usd_rate, rate_date)
    return result


def to_usd(amount_minor: int, currency: str, rate: Decimal, rate_date: date) -> UsdEquivalent:
    """An amount in `currency` at a rate from `usd_equivalents`, rounded by the money module's rules."""
    return UsdEquivalent(money.convert(amount_minor, currency, "USD", rate), rate, rate_date)
