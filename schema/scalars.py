"""Scalars: GraphQL `Int` is 32-bit, so money in minor units travels as a string-safe `BigInt`."""

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from billing.pagination import InvalidArgument

BigInt = NewType("BigInt", int)


def parse_big_int(value: object) -> BigInt:
    text = str(value)
    if not text.lstrip("-").isdigit():
        raise InvalidArgument("BigInt", f"'{text}' is not a whole number")
    return BigInt(int(text))


SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="A whole number of any size, sent as a string (minor units of money exceed 32 bits).",
        serialize=str,
        parse_value=parse_big_int,
    )
}
