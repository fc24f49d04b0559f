"""Query entry points for accounts: the caller's own, the partner dashboard's list, and `node(id:)`."""

import strawberry

from billing import accounts
from billing.errors import NotFound
from billing.pagination import InvalidArgument
from resolvers.context import Info
from schema.account import Account
from schema.node import Node, from_global_id, parse_global_id
from schema.pagination import Connection, Edge

AccountConnection = Connection[Account]


async def visible_account(info: Info, account_id: int, argument: str = "id") -> Account:
    """The account if the caller may see it; a missing and a foreign account give the same error."""
    async with info.context.db() as session:
        try:
            row = await accounts.get_visible(session, info.context.principal, account_id)
        except NotFound:
            raise InvalidArgument(argument, "no such account") from None
    return Account.from_model(row)


@strawberry.type
class AccountQuery:
    @strawberry.field(description="An account by ID; the caller's own account when `id` is omitted.")
    async def account(self, info: Info, id: strawberry.ID | None = None) -> Account:
        if id is None:
            home = info.context.principal.home_account_id
            if home is None:
                raise InvalidArgument("id", "required: this API key is not tied to one account")
            return await visible_account(info, home)
        return await visible_account(info, from_global_id(id, "Account", "id"))

    @strawberry.field(
        description="Every account the caller may see, by creation order. `first` is at most 100."
    )
    async def accounts(self, info: Info, first: int = 20, after: str | None = None) -> AccountConnection:
        async with info.context.db() as session:
            page = await accounts.list_visible(session, info.context.principal, first=first, after=after)
        edges = [
            Edge(cursor=accounts.account_cursor(row), node=Account.from_model(row)) for row in page.items
        ]
        return AccountConnection.of(edges, has_next=page.has_next, after=after)

    @strawberry.field(description="Any object by its global ID.")
    async def node(self, info: Info, id: strawberry.ID) -> Node:
        type_name, pk = parse_global_id(id, "id")
        if type_name == "Account":
            return await visible_account(info, pk)
        raise InvalidArgument("id", f"{type_name} objects are reached through their account")
