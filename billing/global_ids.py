"""Global IDs: the opaque `Type:pk` strings (base64url) the API names every object by.

One implementation for everything that hands an id outward: the GraphQL schema's `Node.id` (schema/node.py)
and outgoing webhooks' payloads (billing/outgoing_webhooks/service.py), so a receiver gets the very id `Account.id` or
`Transaction.id` answers. The type names are the API's object types ("Account", "Transaction", ...).
"""

import base64
import binascii
import re
from functools import lru_cache

from billing.errors import InvalidArgument

# Primary keys are positive INTEGER columns (32-bit on PostgreSQL), written in ASCII digits (int() would take
# '²' or Arabic-Indic digits too).
MAX_PK = 2**31 - 1
_GLOBAL_ID = re.compile(r"([A-Za-z][A-Za-z0-9]{0,39}):([1-9][0-9]{0,9})", re.ASCII)
# The base64 of the longest `Type:pk` above; anything longer is refused before decoding.
MAX_GLOBAL_ID_LENGTH = 68


def to_global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode()


def parse_global_id(global_id: str, argument: str) -> tuple[str, int]:
    """(type name, pk) of a global ID, or an InvalidArgument naming `argument`."""
    parsed = _decoded(global_id) if len(global_id) <= MAX_GLOBAL_ID_LENGTH else None
    if parsed is None:
        raise InvalidArgument(argument, "not a valid ID")
    return parsed


# A recordUsage batch names the same few accounts and plans in its thousand events. Bounded, and only ids of
# at most MAX_GLOBAL_ID_LENGTH characters reach it.
@lru_cache(maxsize=4_096)
def _decoded(global_id: str) -> tuple[str, int] | None:
    try:
        match = _GLOBAL_ID.fullmatch(
            base64.b64decode(global_id.encode(), altchars=b"-_", validate=True).decode()
        )
    except (binascii.Error, UnicodeError, ValueError):
        return None
    if match is None or int(match.group(2)) > MAX_PK:
        return None
    return match.group(1), int(match.group(2))


def from_global_id(global_id: str, type_name: str, argument: str) -> int:
    """The pk of a global ID that must name a `type_name`."""
    found_type, pk = parse_global_id(global_id, argument)
    if found_type != type_name:
        raise InvalidArgument(argument, f"not {_article(type_name)} {type_name} ID")
    return pk


def _article(type_name: str) -> str:
    """'an' before a vowel sound. The API's type names that start with a vowel letter start with its sound
    ("an Account", "an AutoRecharge"); a U (as in "Usage") would not, and no type name starts with one."""
    return "an" if type_name.startswith(("A", "E", "I", "O")) else "a"
