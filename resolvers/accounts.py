"""Query entry points for accounts: the caller's own, the partner dashboard's list, and `node(id:)`."""

from collections.abc import Callable
from typing import Any

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts import service as accounts
from billing.accounts.repository import AccountRow, ShownAccount
from billing.errors import InvalidArgument, NotFound
from billing.pagination import Page
from models import LeadPlanSubscription
from models import PaymentMethod as PaymentMethodModel
from models import Transaction as TransactionModel
from models import WebhookDelivery as WebhookDeliveryModel
from models import WebhookEndpoint as WebhookEndpointModel
from schema.accounts import Account
from schema.context import Info
from schema.lead_plans import LeadPlan
from schema.ledger import Transaction
from schema.node import Node, from_global_id, parse_global_id
from schema.outgoing_webhooks import WebhookDelivery, WebhookEndpoint
from schema.pagination import Connection, Edge
from schema.payment_methods import PaymentMethod
from schema.preload import prefetch, wanted_parts

AccountConnection = Connection[Account]


async def visible_account(info: Info, account_id: int, argument: str = "id") -> Account:
    """The account if the caller may see it; a missing and a foreign account give the same error."""
    principal = info.context.principal
    try:
        row = await info.context.read(lambda session: accounts.get_visible(session, principal, account_id))
    except NotFound:
        raise InvalidArgument(argument, "no such account") from None
    return Account.from_model(row)


async def with_parts(info: Info, account: Account) -> Account:
    """A query's account with the parts its selection names fetched (schema/preload.py)."""
    wanted = wanted_parts(info, ())
    if wanted:
        await info.context.read(lambda session: prefetch(info, session, [account.model], wanted))
    return account


async def named_or_own_account(info: Info, id: strawberry.ID | None, argument: str) -> Account:
    """The account named by `argument` (if the caller may see it), or the caller's own when it is omitted."""
    if id is not None:
        return await visible_account(info, from_global_id(id, "Account", argument), argument)
    home = info.context.principal.home_account_id
    if home is None:
        raise InvalidArgument(argument, "required: this API key is not tied to one account")
    return await visible_account(info, home, argument)


@strawberry.type
class AccountQuery:
    @strawberry.field(description="An account by ID; the caller's own account when `id` is omitted.")
    async def account(self, info: Info, id: strawberry.ID | None = None) -> Account:
        info.context.share_reads()
        return await with_parts(info, await named_or_own_account(info, id, "id"))

    @strawberry.field(
        description="Every account the caller may see, by creation order. `first` is at most 100."
    )
    async def accounts(self, info: Info, first: int = 20, after: str | None = None) -> AccountConnection:
        info.context.share_reads()
        principal = info.context.principal
        wanted = wanted_parts(info, ("edges", "node"))

        async def work(session: AsyncSession) -> Page[AccountRow]:
            page = await accounts.list_visible(session, principal, first=first, after=after)
            await prefetch(info, session, page.items, wanted)
            return page

        page = await info.context.read(work)
        edges = [
            Edge(cursor=accounts.account_cursor(row), node=Account.from_model(row)) for row in page.items
        ]
        return AccountConnection.of(edges, has_next=page.has_next, after=after)

    @strawberry.field(description="Any object by its global ID.")
    async def node(self, info: Info, id: strawberry.ID) -> Node:
        info.context.share_reads()
        type_name, pk = parse_global_id(id, "id")
        if type_name == "Account":
            return await with_parts(info, await visible_account(info, pk))
        if type_name not in OWNED_NODES:
            raise InvalidArgument("id", "not a valid ID")
        model, to_node = OWNED_NODES[type_name]
        principal = info.context.principal
        try:
            row, account = await info.context.read(
                lambda session: accounts.visible_owned(session, principal, model, pk)
            )
        except NotFound:
            raise InvalidArgument("id", "no such object") from None
        return to_node(row, account)


# Objects that belong to an account, by global ID type: their table and how to show one.
OWNED_NODES: dict[str, tuple[Any, Callable[[Any, ShownAccount], Node]]] = {
    "Transaction": (TransactionModel, lambda row, account: Transaction.from_model(row, account.country)),
    "PaymentMethod": (PaymentMethodModel, lambda row, _: PaymentMethod.from_model(row)),
    "LeadPlan": (LeadPlanSubscription, lambda row, account: LeadPlan.from_model(row, account.country)),
    "WebhookEndpoint": (WebhookEndpointModel, lambda row, _: WebhookEndpoint.from_model(row)),
    "WebhookDelivery": (WebhookDeliveryModel, lambda row, _: WebhookDelivery.from_model(row)),
}
