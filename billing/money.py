"""Money as integer minor units of an ISO 4217 currency: parsing, converting, formatting. Never a float.

Amounts from clients are parsed by hand, never by `Decimal(text)`: Decimal accepts exponents ("1e999990" makes
a million-digit number, and arithmetic on it stalls the server), spaces, underscores, "+5", ".5" and non-ASCII
digits. Only a plain decimal of bounded length reaches any arithmetic here.
"""

import re
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache, lru_cache

from babel import Locale
from babel.numbers import NumberPattern, get_currency_precision

from billing.errors import DomainError, as_named_here

# Every amount fits a signed 64-bit column with room to add up: at most 18 digits in minor units, so at most
# 16 digits before the point for a two-decimal currency.
MAX_MINOR_DIGITS = 18
# Longer than any amount that can be valid (sign, digits, point): refused before the pattern even runs.
_MAX_TEXT_LENGTH = MAX_MINOR_DIGITS + 2
_PLAIN_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?", re.ASCII)


class InvalidAmount(DomainError):
    """An amount that is not a plain decimal in bounds. `field` is the domain's name for the input at fault;
    `problem` says what is wrong as a predicate ("must be ..."), for the edge to put after the API's name."""

    def __init__(self, problem: str, field: str = "amount") -> None:
        self.problem = problem
        self.field = field
        super().__init__(self.describe(as_named_here))

    def describe(self, field_name: Callable[[str], str]) -> str:
        """The message for a person, naming the field as `field_name` spells it."""
        return f"{field_name(self.field)} {self.problem}"


@cache  # a handful of currencies; Babel looks the precision up in its data on every call
def exponent(currency: str) -> int:
    """Digits after the decimal point (2 for EUR, 0 for JPY, 3 for KWD)."""
    return int(get_currency_precision(currency))


def to_minor(amount: Decimal | str, currency: str, *, field: str = "amount") -> int:
    """An exact decimal amount in minor units; more decimals than the currency has is an error, not a rounding.

    Text must match `-?[0-9]+(.[0-9]+)?` (ASCII digits; no exponent, sign "+", spaces or separators) with at
    most the currency's decimals and at most MAX_MINOR_DIGITS digits in minor units; anything else is an
    InvalidAmount naming `field`, decided in time proportional to a bounded length.
    """
    text = _plain_text(amount, field) if isinstance(amount, Decimal) else amount
    decimals = exponent(currency)
    max_whole = MAX_MINOR_DIGITS - decimals
    match = _PLAIN_DECIMAL.fullmatch(text) if len(text) <= _MAX_TEXT_LENGTH + decimals else None
    if match is None:
        raise InvalidAmount(
            f"must be a plain decimal number such as 12.50, with at most {max_whole} digits before the point",
            field,
        )
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction) > decimals:
        allowed = f"at most {decimals} decimals" if decimals else "no decimals"
        raise InvalidAmount(f"must have {allowed} in {currency}", field)
    if len(whole.lstrip("0")) > max_whole:
        raise InvalidAmount(f"must have at most {max_whole} digits before the point", field)
    minor = int(whole + fraction.ljust(decimals, "0"))
    return -minor if sign else minor


def _plain_text(amount: Decimal, field: str) -> str:
    """A Decimal (from code, not clients) as plain text, without expanding a huge exponent first."""
    if not amount.is_finite() or abs(amount.adjusted()) > MAX_MINOR_DIGITS:
        raise InvalidAmount("must be a plain decimal number such as 12.50", field)
    return format(amount, "f")


def to_decimal(minor: int, currency: str) -> Decimal:
    # Exact: an integer's digits with the currency's exponent (12345 EUR cents are 123.45, 0 is 0.00).
    return Decimal(minor).scaleb(-exponent(currency))


def convert(minor: int, currency: str, to_currency: str, rate: Decimal) -> int:
    """`rate` is units of `to_currency` per unit of `currency`; rounds half to even at the target's precision."""
    target = to_decimal(minor, currency) * rate
    return int(target.scaleb(exponent(to_currency)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@cache  # a handful of locales; parsing one and looking up its pattern dominated formatting a dashboard's money
def _currency_format(locale: str) -> tuple[Locale, NumberPattern]:
    parsed = Locale.parse(locale)
    return parsed, parsed.currency_formats["standard"]


# A pure function of its arguments, and the same amounts come back on every load of a page (a balance, a plan's
# budget, a dashboard's hundred accounts): Babel's pattern takes ~35 us an amount, a hit well under 1 us.
# Bounded: 16,384 short strings are a few MiB.
@lru_cache(maxsize=16_384)
def format_money(minor: int, currency: str, locale: str = "en_US") -> str:
    """What Babel's `format_currency(amount, currency, locale=locale)` gives, with the parsed locale and its
    standard currency pattern cached (that function parses both on every call)."""
    parsed, pattern = _currency_format(locale)
    return str(pattern.apply(to_decimal(minor, currency), parsed, currency=currency, currency_digits=True))
