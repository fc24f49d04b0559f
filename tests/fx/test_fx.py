"""ECB reference rates: parsing, idempotent loading, and USD cross rates for the balance."""

import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.fx import service as fx
from billing.fx.service import FxFileError, load_file_or_url, load_rates, parse_ecb_xml, usd_equivalents
from models import FxRate

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "ecb-eurofxref-sample.xml"
SAMPLE_CURRENCIES = {"USD", "JPY", "CZK", "DKK", "GBP", "HUF", "PLN", "SEK", "CHF", "NOK"}
LATEST = date(2026, 11, 27)

DAILY = b"""<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
    xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time='2026-11-30'>
      <Cube currency='USD' rate='1.1601'/>
      <Cube currency='GBP' rate='0.87910'/>
    </Cube>
  </Cube>
</gesmes:Envelope>
"""


def envelope(days: str) -> bytes:
    return (
        '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
        'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">'
        f"<Cube>{days}</Cube></gesmes:Envelope>"
    ).encode()


def cross(usd_per_eur: str, per_eur: str) -> Decimal:
    return fx.CROSS_RATE_CONTEXT.divide(Decimal(usd_per_eur), Decimal(per_eur))


async def load_sample(session: AsyncSession) -> int:
    return await load_rates(session, parse_ecb_xml(SAMPLE.read_bytes()))


# Parsing


def test_parses_the_sample_history() -> None:
    rows = parse_ecb_xml(SAMPLE.read_bytes())

    assert len(rows) == 5 * len(SAMPLE_CURRENCIES)
    assert {currency for _, currency, _ in rows} == SAMPLE_CURRENCIES
    assert {day for day, _, _ in rows} == {date(2026, 11, d) for d in (23, 24, 25, 26, 27)}
    assert (LATEST, "USD", Decimal("1.1592")) in rows
    assert (LATEST, "JPY", Decimal("180.87")) in rows
    # The published text survives, trailing zero included.
    assert str(dict(((d, c), r) for d, c, r in rows)[(date(2026, 11, 26), "GBP")]) == "0.87720"


def test_parses_a_daily_file() -> None:
    assert parse_ecb_xml(DAILY) == [
        (date(2026, 11, 30), "USD", Decimal("1.1601")),
        (date(2026, 11, 30), "GBP", Decimal("0.87910")),
    ]


MALFORMED = {
    "not xml": b"this is not xml",
    "empty": b"",
    "truncated": DAILY[: len(DAILY) // 2],
    "html error page": b"<html><body>502 Bad Gateway</body></html>",
    "no ECB namespace": (
        b'<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01">'
        b"<Cube><Cube time='2026-11-30'><Cube currency='USD' rate='1.1'/></Cube></Cube></gesmes:Envelope>"
    ),
    "no days": envelope(""),
    "day without rates": envelope("<Cube time='2026-11-30'></Cube>"),
    "missing time": envelope("<Cube><Cube currency='USD' rate='1.1'/></Cube>"),
    "bad date": envelope("<Cube time='30/11/2026'><Cube currency='USD' rate='1.1'/></Cube>"),
    "impossible date": envelope("<Cube time='2026-02-30'><Cube currency='USD' rate='1.1'/></Cube>"),
    "bad currency": envelope("<Cube time='2026-11-30'><Cube currency='usd' rate='1.1'/></Cube>"),
    "EUR listed": envelope("<Cube time='2026-11-30'><Cube currency='EUR' rate='1'/></Cube>"),
    "missing rate": envelope("<Cube time='2026-11-30'><Cube currency='USD'/></Cube>"),
    "text rate": envelope("<Cube time='2026-11-30'><Cube currency='USD' rate='abc'/></Cube>"),
    "negative rate": envelope("<Cube time='2026-11-30'><Cube currency='USD' rate='-1.1'/></Cube>"),
    "zero rate": envelope("<Cube time='2026-11-30'><Cube currency='USD' rate='0.0000'/></Cube>"),
    "exponent rate": envelope("<Cube time='2026-11-30'><Cube currency='USD' rate='1e3'/></Cube>"),
    "NaN rate": envelope("<Cube time='2026-11-30'><Cube currency='USD' rate='NaN'/></Cube>"),
    "conflicting duplicate": envelope(
        "<Cube time='2026-11-30'><Cube currency='USD' rate='1.1'/><Cube currency='USD' rate='1.2'/></Cube>"
    ),
    "entity expansion": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>'
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>'
    ),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_files_are_rejected_with_a_domain_error(data: bytes) -> None:
    with pytest.raises(FxFileError) as raised:
        parse_ecb_xml(data)
    assert raised.value.message


def test_an_identical_duplicate_is_kept_once() -> None:
    data = envelope(
        "<Cube time='2026-11-30'><Cube currency='USD' rate='1.10'/><Cube currency='USD' rate='1.1'/></Cube>"
    )
    assert parse_ecb_xml(data) == [(date(2026, 11, 30), "USD", Decimal("1.10"))]


# Loading


async def count_rates(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(FxRate))).one()


async def test_loading_the_same_file_twice_changes_nothing(session: AsyncSession) -> None:
    first = await load_sample(session)
    second = await load_sample(session)

    assert first == 50
    assert second == 0
    assert await count_rates(session) == 50
    stored = await session.get(FxRate, ("GBP", date(2026, 11, 26)))
    assert stored is not None
    assert stored.per_eur == "0.87720"


async def test_a_corrected_rate_is_updated_and_new_days_are_added(session: AsyncSession) -> None:
    await load_sample(session)

    changed = await load_rates(
        session,
        [
            (LATEST, "GBP", Decimal("0.87850")),  # a correction
            (LATEST, "USD", Decimal("1.15920")),  # the same value written differently: unchanged
            (date(2026, 11, 30), "USD", Decimal("1.1601")),  # a new day
        ],
    )

    assert changed == 2
    assert await count_rates(session) == 51
    corrected = await session.get(FxRate, ("GBP", LATEST))
    assert corrected is not None
    assert corrected.per_eur == "0.87850"


async def test_load_nothing(session: AsyncSession) -> None:
    assert await load_rates(session, []) == 0


async def test_load_from_a_path(session: AsyncSession) -> None:
    assert await load_file_or_url(session, str(SAMPLE)) == 50


async def test_a_missing_path_is_a_domain_error(session: AsyncSession, tmp_path: Path) -> None:
    with pytest.raises(FxFileError, match="could not read"):
        await load_file_or_url(session, str(tmp_path / "missing.xml"))


@pytest.fixture
def loopback_server() -> Iterator[str]:
    """The data/ folder over HTTP on 127.0.0.1, standing in for the ECB."""
    handler = partial(_QuietHandler, directory=str(SAMPLE.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_load_from_a_url(session: AsyncSession, loopback_server: str) -> None:
    assert await load_file_or_url(session, f"{loopback_server}/{SAMPLE.name}") == 50


async def test_a_failing_url_is_a_domain_error(session: AsyncSession, loopback_server: str) -> None:
    with pytest.raises(FxFileError, match="could not fetch"):
        await load_file_or_url(session, f"{loopback_server}/missing.xml")


# USD equivalents


async def test_cross_rates_to_usd(session: AsyncSession) -> None:
    await load_sample(session)

    rates = await usd_equivalents(session, {"EUR", "GBP", "JPY", "USD"})

    # EUR is the ECB's base: USD per EUR is the published USD rate itself, exactly.
    assert rates["EUR"] == (Decimal("1.1592"), LATEST)
    # GBP: USD per EUR / GBP per EUR, to 12 significant digits, half-even.
    assert rates["GBP"] == (Decimal("1.31959701747"), LATEST)
    assert rates["GBP"][0] == cross("1.1592", "0.87845")
    assert rates["JPY"] == (Decimal("0.00640902305523"), LATEST)
    assert rates["USD"] == (Decimal(1), LATEST)


async def test_usd_equivalent_of_a_balance(session: AsyncSession) -> None:
    await load_sample(session)
    rates = await usd_equivalents(session, {"GBP", "JPY"})

    gbp = fx.to_usd(100_000, "GBP", *rates["GBP"])  # £1,000.00
    jpy = fx.to_usd(1_234_567, "JPY", *rates["JPY"])  # ¥1,234,567

    assert gbp == fx.UsdEquivalent(amount_minor=131_960, rate=Decimal("1.31959701747"), rate_date=LATEST)
    assert jpy.amount_minor == 791_237  # $7,912.367... rounds to $7,912.37


async def test_rates_come_from_the_latest_day_on_or_before_the_date(session: AsyncSession) -> None:
    await load_sample(session)

    on_wednesday = await usd_equivalents(session, {"EUR", "GBP"}, on=date(2026, 11, 25))
    on_sunday = await usd_equivalents(session, {"GBP"}, on=date(2026, 11, 29))
    before_any = await usd_equivalents(session, {"EUR", "GBP"}, on=date(2026, 11, 20))

    assert on_wednesday == {
        "EUR": (Decimal("1.1541"), date(2026, 11, 25)),
        "GBP": (cross("1.1541", "0.87655"), date(2026, 11, 25)),
    }
    assert on_sunday["GBP"] == (cross("1.1592", "0.87845"), LATEST)
    assert before_any == {}


async def test_a_day_without_a_usd_rate_is_skipped(session: AsyncSession) -> None:
    await load_sample(session)
    # A newer GBP rate without a USD rate that day cannot give a cross rate; the previous common day is used.
    await load_rates(session, [(date(2026, 11, 30), "GBP", Decimal("0.88000"))])

    rates = await usd_equivalents(session, {"GBP", "EUR"})

    assert rates["GBP"] == (cross("1.1592", "0.87845"), LATEST)
    assert rates["EUR"] == (Decimal("1.1592"), LATEST)


async def test_currencies_without_a_rate_are_absent(session: AsyncSession) -> None:
    await load_sample(session)

    rates = await usd_equivalents(session, {"GBP", "BRL", "XYZ"})

    assert set(rates) == {"GBP"}
    assert await usd_equivalents(session, set()) == {}


async def test_no_rates_at_all(session: AsyncSession) -> None:
    assert await usd_equivalents(session, {"EUR", "GBP", "USD"}) == {}


async def test_one_sql_statement_for_any_number_of_currencies(
    session: AsyncSession, connection: AsyncConnection
) -> None:
    await load_sample(session)
    await session.flush()
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(connection.sync_connection, "before_cursor_execute", record)
    try:
        rates = await usd_equivalents(session, SAMPLE_CURRENCIES | {"EUR", "BRL"})
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", record)

    assert len(statements) == 1, statements
    assert set(rates) == SAMPLE_CURRENCIES | {"EUR"}
    assert all(rate_date == LATEST for _, rate_date in rates.values())


async def test_sample_rows_are_all_stored(session: AsyncSession) -> None:
    await load_sample(session)
    statement = select(FxRate.currency).where(col(FxRate.rate_date) == LATEST)
    assert set((await session.exec(statement)).all()) == SAMPLE_CURRENCIES
