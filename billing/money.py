"""Money as integer minor units of an ISO 4217 currency: parsing, converting, formatting. Never a float."""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from babel.numbers import format_currency, get_currency_precision, list_currencies

from billing.errors import DomainError

_KNOWN_CURRENCIES = frozenset(list_currencies())


class InvalidAmount(DomainError):
    pass


def is_currency(code: str) -> bool:
    return code in _KNOWN_CURRENCIES


def exponent(currency: str) -> int:
    """Digits after the decimal point (2 for EUR, 0 for JPY, 3 for KWD)."""
    return int(get_currency_precision(currency))


def to_minor(amount: Decimal | str, currency: str) -> int:
    """An exact decimal amount in minor units; more decimals than the currency has is an error, not a rounding."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise InvalidAmount(f"'{amount}' is not a decimal number") from None
    if not value.is_finite():
        raise InvalidAmount(f"'{amount}' is not a finite number")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise InvalidAmount(f"{currency} amounts have at most {exponent(currency)} decimals")
    return int(scaled)


def to_decimal(minor: int, currency: str) -> Decimal:
    digits = exponent(currency)
    return Decimal(minor).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def convert(minor: int, currency: str, to_currency: str, rate: Decimal) -> int:
    """`rate` is units of `to_currency` per unit of `currency`; rounds half to even at the target's precision."""
    target = to_decimal(minor, currency) * rate
    return int(target.scaleb(exponent(to_currency)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def format_money(minor: int, currency: str, locale: str = "en_US") -> str:
    return str(format_currency(to_decimal(minor, currency), currency, locale=locale))
