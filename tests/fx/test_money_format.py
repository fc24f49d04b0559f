"""Money formatting with the cached locale and pattern gives exactly what Babel's `format_currency` gives.

Pure functions, no database: each locale and currency against Babel over fixed edge amounts and generated ones.
"""

from itertools import product

import pytest
from babel.numbers import format_currency
from hypothesis import given
from hypothesis import strategies as st

from billing.money import MAX_MINOR_DIGITS, format_money, to_decimal

LOCALES = ("de_DE", "en_US", "en_GB", "fr_FR")
CURRENCIES = ("EUR", "USD", "GBP", "JPY")
# Zero, one minor unit, rounding and grouping boundaries, negatives and the largest amounts a column holds.
EDGE_AMOUNTS = (
    0,
    1,
    -1,
    5,
    99,
    100,
    -100,
    999,
    1000,
    123456,
    -123456,
    99999999,
    100000000,
    -987654321012,
    10**MAX_MINOR_DIGITS - 1,
    -(10**MAX_MINOR_DIGITS - 1),
)
LARGEST = 10**MAX_MINOR_DIGITS - 1


def babel(minor: int, currency: str, locale: str) -> str:
    return str(format_currency(to_decimal(minor, currency), currency, locale=locale))


@pytest.mark.parametrize(("locale", "currency"), list(product(LOCALES, CURRENCIES)))
def test_edge_amounts_match_babel(locale: str, currency: str) -> None:
    for minor in EDGE_AMOUNTS:
        assert format_money(minor, currency, locale) == babel(minor, currency, locale), (
            minor,
            currency,
            locale,
        )


@given(
    minor=st.integers(min_value=-LARGEST, max_value=LARGEST),
    currency=st.sampled_from(CURRENCIES),
    locale=st.sampled_from(LOCALES),
)
def test_any_amount_matches_babel(minor: int, currency: str, locale: str) -> None:
    assert format_money(minor, currency, locale) == babel(minor, currency, locale)


def test_default_locale_and_interleaved_calls_do_not_share_a_pattern() -> None:
    """The cache is per locale: alternating locales and currencies keeps each one's separators and symbol."""
    assert format_money(123450, "EUR") == "€1,234.50"
    assert format_money(123450, "EUR", "de_DE") == "1.234,50\xa0€"
    assert format_money(123450, "JPY", "de_DE") == "123.450\xa0¥"
    assert format_money(-123450, "GBP", "en_GB") == "-£1,234.50"
    assert format_money(123450, "EUR", "fr_FR") == babel(123450, "EUR", "fr_FR")
