"""Money: the exact amount, its minor units, the currency, and a string formatted for the account's locale."""

from functools import lru_cache

import strawberry
from babel import Locale, UnknownLocaleError

from billing import money
from schema.scalars import BigInt


@lru_cache(maxsize=256)
def locale_for_country(country: str) -> str:
    """The most likely locale of a country (DE -> de_DE), so amounts read the way the customer writes them."""
    try:
        return str(Locale.parse(f"und_{country}"))
    except (UnknownLocaleError, ValueError):
        return "en_US"


@strawberry.type(description="An amount of money; never a float.")
class Money:
    amount: str = strawberry.field(description="Exact decimal amount, e.g. '1234.50'.")
    minor_units: BigInt = strawberry.field(description="The amount in the currency's minor units (cents).")
    currency: str = strawberry.field(description="ISO 4217 code.")
    formatted: str = strawberry.field(description="Formatted for the account's locale, e.g. '1.234,50 €'.")

    @classmethod
    def of(cls, minor: int, currency: str, country: str = "US") -> "Money":
        return cls(
            amount=str(money.to_decimal(minor, currency)),
            minor_units=BigInt(minor),
            currency=currency,
            formatted=money.format_money(minor, currency, locale_for_country(country)),
        )
