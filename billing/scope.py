"""Which accounts a repository may read or write: a principal's, or (for trusted background paths) all of them."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import Mapped

from billing.keys.repository import accounts_of

if TYPE_CHECKING:  # billing.keys.service -> billing.events.service -> billing.accounts.funding builds repositories: no import cycle
    from billing.keys.service import Principal


@dataclass(frozen=True)
class Scope:
    """Made with `Scope.of(principal)` for a request, or `Scope.system(why)` where no caller exists (the worker, Stripe
    webhooks, the CLI); tests/gateway/test_structure.py holds the system scope to those modules."""

    principal: "Principal | None"
    system_reason: str | None = None

    @classmethod
    def of(cls, principal: "Principal") -> "Scope":
        return cls(principal)

    @classmethod
    def system(cls, why: str) -> "Scope":
        return cls(None, why)

    def accounts(self, column: ColumnElement[int] | Mapped[int] | Mapped[int | None]) -> ColumnElement[bool]:
        """A WHERE clause limiting the account id `column` (pass `col(X.account_id)`) to this scope."""
        if self.principal is None:
            return true()
        return accounts_of(self.principal, column)
