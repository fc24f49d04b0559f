"""Ledger entries as the transaction history shows them."""

from datetime import datetime

import strawberry

from billing.errors import InvalidArgument
from billing.ledger.history import HistoryFilter
from billing.ledger.repository import HistoryEntry
from models import Transaction as TransactionModel
from models import TransactionKind, TransactionStatus
from schema.bounds import BoundedInput, bounded
from schema.money import Money
from schema.node import Node, to_global_id
from schema.pagination import Connection

# The models' enums are the GraphQL enums: one name for one thing.
strawberry.enum(TransactionKind)
strawberry.enum(TransactionStatus)


@strawberry.type
class Transaction(Node):
    created_at: datetime
    description: str
    amount: Money = strawberry.field(description="Signed: credits positive, debits negative.")
    status: TransactionStatus
    kind: TransactionKind
    failure_code: str | None
    failure_message: str | None
    settled_at: datetime | None

    @classmethod
    def from_model(cls, row: TransactionModel | HistoryEntry, country: str) -> "Transaction":
        assert row.id is not None
        return cls(
            id=to_global_id("Transaction", row.id),
            created_at=row.created_at,
            description=row.description,
            amount=Money.of(row.amount_minor, row.currency, country),
            status=TransactionStatus(row.status),
            kind=TransactionKind(row.kind),
            failure_code=row.failure_code,
            failure_message=row.failure_message,
            settled_at=row.settled_at,
        )


@strawberry.input(description="All given conditions must hold.")
class TransactionFilter(BoundedInput, argument="filter"):
    kinds: list[TransactionKind] | None = bounded(len(TransactionKind), unit="items", default=None)
    statuses: list[TransactionStatus] | None = bounded(len(TransactionStatus), unit="items", default=None)
    since: datetime | None = strawberry.field(default=None, description="Inclusive.")
    until: datetime | None = strawberry.field(default=None, description="Exclusive.")

    def to_domain(self) -> HistoryFilter:
        try:
            return HistoryFilter(
                kinds=frozenset(self.kinds or ()),
                statuses=frozenset(self.statuses or ()),
                since=self.since,
                until=self.until,
            )
        except InvalidArgument as error:
            raise error.named(history_filter_argument) from None


# Domain names (ledger.history.HistoryFilter, and `where` for the filter as a whole) as the client sees them.
_HISTORY_FILTER_ARGUMENTS = {
    "since": "filter.since",
    "until": "filter.until",
    "where": "filter",
}


def history_filter_argument(name: str) -> str:
    return _HISTORY_FILTER_ARGUMENTS.get(name, name)


TransactionConnection = Connection[Transaction]
