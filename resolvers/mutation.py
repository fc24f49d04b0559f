"""The one skeleton of a mutation: find what it acts on, do the work, answer expected failures in its union.

The work returns the mutation's success member; a domain error it raises becomes the member its declaration
(next to the union, in `schema/`) names for it, built with the account's country so money in the message is
written in its locale. An error the declaration does not name is raised again: an InvalidArgument becomes a
top-level BAD_USER_INPUT, anything else is masked as an internal error (and a test walks every mutation of the
schema to prove none answers that way).
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry

from billing.errors import DomainError
from resolvers.accounts import named_or_own_account
from schema.accounts import Account
from schema.context import Info
from schema.errors import DeclaredErrors

P = TypeVar("P")
W = TypeVar("W")


async def on_account(
    info: Info,
    account_id: strawberry.ID | None,
    errors: DeclaredErrors[P, str],
    work: Callable[[Account], Awaitable[P]],
) -> P:
    """For the account named by the input's `accountId` (if the caller may see it), or the caller's own."""
    account = await named_or_own_account(info, account_id, "accountId")
    return await answered(errors, account.country, lambda: work(account))


async def answered(errors: DeclaredErrors[P, W], where: W, work: Callable[[], Awaitable[P]]) -> P:
    """The work's result, or its declared error's union member. Mutations not scoped to one account up front
    (lead plans find theirs through the plan, a usage batch spans accounts) call it with `where=None`."""
    try:
        return await work()
    except DomainError as error:
        return errors.answer(error, where)
