"""Exchange rates: the ECB's reference rates as loaded into `fx_rate`.

No scope: a rate belongs to no account (every account reads the same ones), so nothing here filters by one.
"""

from collections.abc import Iterable
from datetime import date
from functools import cache

from sqlalchemy import ColumnElement, Date, and_, bindparam, func
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from billing import prepared
from billing.sql import among_parameter
from models import FxRate


class FxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def between(self, first: date, last: date) -> list[FxRate]:
        """Every rate of the days from `first` to `last`: one range query, however many days (the full ECB
        history has thousands)."""
        statement = select(FxRate).where(col(FxRate.rate_date).between(first, last))
        return list((await self.session.exec(statement)).all())

    async def save(self, rates: Iterable[FxRate]) -> None:
        """Insert new rates and write changed ones."""
        self.session.add_all(list(rates))
        await self.session.flush()

    async def latest_with_usd(
        self, currencies: Iterable[str], on: date | None = None
    ) -> list[tuple[str, date, str, str]]:
        """(currency, day, units per EUR, USD per EUR) for each of `currencies` on the latest day <= `on` that
        has both its rate and USD's: one statement for any number of currencies."""
        statement = _latest_with_usd(self.session.get_bind().dialect.name, bounded=on is not None)
        parameters: dict[str, object] = {"currencies": list(currencies)}
        if on is not None:
            parameters["on"] = on
        connection = await self.session.connection()
        return list(await prepared.rows(connection, statement, parameters))


@cache  # built once per database kind: building it took longer than running it (every Billing page asks)
def _latest_with_usd(dialect: str, *, bounded: bool) -> Select[str, date, str, str]:
    base = aliased(FxRate)
    usd = aliased(FxRate)
    same_day_usd = and_(col(usd.currency) == "USD", col(usd.rate_date) == col(base.rate_date))
    currency = col(base.currency)
    conditions: list[ColumnElement[bool]] = [among_parameter(dialect, currency, "currencies")]
    if bounded:
        conditions.append(col(base.rate_date) <= bindparam("on", type_=Date))
    latest_days = (
        select(currency.label("currency"), func.max(col(base.rate_date)).label("rate_date"))
        .join(usd, same_day_usd)
        .where(*conditions)
        .group_by(currency)
        .subquery()
    )
    return (
        select(currency, col(base.rate_date), col(base.per_eur), col(usd.per_eur))
        .join(
            latest_days,
            and_(latest_days.c.currency == currency, latest_days.c.rate_date == col(base.rate_date)),
        )
        .join(usd, same_day_usd)
    )
