"""Subscription entry points: an account or its history as it changes, in the same scope as queries.

Each subscription follows accounts through a feed of committed domain events (billing/events/live.py): the
one named, the caller's own, or (a partner's key without an id) every account the partner manages at the time of
each event, so one granted later is followed and one taken away is not. For every event it reads the object
again, through the same read path and scope check as a query, with the operation's dataloaders emptied first, so
each `next` shows the state after that event and an account the caller may no longer see is skipped. The last event an answer covers is its cursor, sent in the
`next` message's `extensions.cursor`; a client that reconnects passes it as `after` and gets what it missed.
"""

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from functools import partial

import strawberry

from billing.accounts import service as accounts
from billing.errors import InvalidArgument, NotFound
from billing.events import live as live_events
from billing.events.live import EventHub
from billing.events.service import (
    AutoRechargeHalted,
    AutoRechargeSettingsChanged,
    BalanceChanged,
    CompanyChanged,
    DefaultPaymentMethodChanged,
    FundingStateChanged,
    LeadPlanChanged,
    PaymentMethodAdded,
    PaymentMethodRemoved,
    StoredEvent,
    TransactionCreated,
    TransactionSettled,
)
from models import PrincipalKind
from models import Transaction as TransactionModel
from resolvers.accounts import visible_account
from schema.accounts import Account
from schema.context import Context, Info
from schema.ledger import Transaction
from schema.node import from_global_id

# What the Account type shows: balance, funding state, auto-recharge (settings and state), cards, company and
# lead plans. Keys and webhook endpoints are not part of it.
ACCOUNT_EVENTS = (
    BalanceChanged,
    FundingStateChanged,
    AutoRechargeSettingsChanged,
    AutoRechargeHalted,
    CompanyChanged,
    PaymentMethodAdded,
    PaymentMethodRemoved,
    DefaultPaymentMethodChanged,
    LeadPlanChanged,
)
# History rows.
HISTORY_EVENTS = (TransactionCreated, TransactionSettled)


@dataclass
class SubscriptionContext(Context):
    """A subscription's context: the process's event hub, and the cursor of the answer being sent."""

    live_events: EventHub = field(kw_only=True)
    cursor: str | None = None


def _context(info: Info) -> SubscriptionContext:
    context = info.context
    if not isinstance(context, SubscriptionContext):
        raise TypeError("subscriptions run with a SubscriptionContext (over WebSocket)")
    return context


async def _followed(info: Info, id: strawberry.ID | None, argument: str) -> frozenset[int] | None:
    """The account named by `argument`, or the caller's own, or (None: a partner's key) all of the partner's."""
    if id is not None:
        return frozenset(
            {(await visible_account(info, from_global_id(id, "Account", argument), argument)).pk}
        )
    principal = info.context.principal
    if principal.home_account_id is not None:
        return frozenset({principal.home_account_id})
    if principal.kind is PrincipalKind.PARTNER:
        return None
    raise InvalidArgument(argument, "required: this API key is not tied to one account")


def _runs(batch: Sequence[StoredEvent]) -> list[tuple[int, StoredEvent]]:
    """(account, last event) for each run of consecutive events of one account. The answer reads the account
    as it is now, so one covers the whole run: a commit's events (a top-up moves the balance and the funding
    state), or the changes a reconnecting client missed."""
    runs: list[tuple[int, StoredEvent]] = []
    for stored in batch:
        if runs and runs[-1][0] == stored.account_id:
            runs[-1] = (stored.account_id, stored)
        else:
            runs.append((stored.account_id, stored))
    return runs


@strawberry.type
class AccountSubscription:
    @strawberry.subscription(
        description=(
            "The account each time its balance, funding state, auto-recharge, cards or company change: the "
            "caller's own, the one named by `id`, or (partner keys, `id` omitted) every account of the "
            "partner. `after` is the `extensions.cursor` of the last answer received: what changed since then "
            "is sent first."
        )
    )
    async def account_updated(
        self, info: Info, id: strawberry.ID | None = None, after: str | None = None
    ) -> AsyncGenerator[Account, None]:
        context = _context(info)
        followed = await _followed(info, id, "id")
        cursor = live_events.cursor_event_id(after) if after is not None else None
        async with context.live_events.feed(context.principal, followed, cursor) as feed:
            while True:
                changed = [e for e in await feed.next_events() if isinstance(e.event, ACCOUNT_EVENTS)]
                for account_id, last in _runs(changed):
                    context.forget_loaded()
                    principal = context.principal
                    try:
                        row = await context.read(
                            partial(accounts.get_visible, principal=principal, account_id=account_id)
                        )
                    except NotFound:
                        continue  # no longer the caller's to see
                    context.cursor = live_events.event_cursor(last.id)
                    yield Account.from_model(row)

    @strawberry.subscription(
        description=(
            "A history row each time one is created or settled (pending -> succeeded, failed or canceled), of "
            "the same accounts as `accountUpdated` follows; `after` as there."
        )
    )
    async def transaction_updated(
        self, info: Info, account_id: strawberry.ID | None = None, after: str | None = None
    ) -> AsyncGenerator[Transaction, None]:
        context = _context(info)
        followed = await _followed(info, account_id, "accountId")
        cursor = live_events.cursor_event_id(after) if after is not None else None
        async with context.live_events.feed(context.principal, followed, cursor) as feed:
            while True:
                for stored in await feed.next_events():
                    if not isinstance(stored.event, HISTORY_EVENTS):
                        continue
                    context.forget_loaded()
                    principal, pk = context.principal, stored.event.transaction_id
                    try:
                        row, account = await context.read(
                            partial(
                                accounts.visible_owned, principal=principal, model=TransactionModel, pk=pk
                            )
                        )
                    except NotFound:
                        continue
                    context.cursor = live_events.event_cursor(stored.id)
                    yield Transaction.from_model(row, account.country)
