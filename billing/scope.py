"""Which accounts a repository may read or write: a principal's, or (for trusted background paths) all of them.

A scope has two rules, and each repository statement applies one of them to its account id column:

- `accounts(column)`, what the scope may read: a member's account, a partner's granted accounts, every account for
  an admin, none for a usage reporter. Every read applies it.
- `writable(column)`, the accounts a write path may lock and post to, and read what the write itself needs (the
  ledger's account locks, idempotency check and balance update; a usage batch's lead plan and duplicate checks;
  the auto-recharge scheduling after a debit). It is the read rule, except for a usage reporter: a trusted
  service that reports (debits) usage of every account, yet reads none. Every other write path finds its account
  through the read rule first, so a usage reporter writes nothing else.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Executable, true
from sqlalchemy.orm import Mapped
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import prepared
from billing.keys.repository import Reach, accounts_of, reach_of, reach_parameters
from models import PrincipalKind

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
        """A WHERE clause limiting the account id `column` (pass `col(X.account_id)`) to what this scope reads."""
        if self.principal is None:
            return true()
        return accounts_of(self.principal, column)

    @property
    def reach(self) -> Reach:
        """Which rule `accounts` applies: the key of a statement built once with `reach_rule` for every scope of
        this reach, and run with `parameters()`."""
        return "all" if self.principal is None else reach_of(self.principal)

    def parameters(self) -> dict[str, int]:
        """The values of the read rule's parameters in a statement built with `reach_rule(self.reach, ...)`."""
        return {} if self.principal is None else reach_parameters(self.principal)

    async def rows(
        self,
        session: AsyncSession,
        statement_for: Callable[[str, Reach], Executable],
        parameters: dict[str, Any],
    ) -> Sequence[Any]:
        """The rows of a repository's statement built once per database kind and scope rule (`statement_for`,
        cached, building its WHERE with `billing.sql.among_parameter` and `reach_rule`), run with `parameters`
        and this scope's: Core rows (tuples whose columns are also attributes), no ORM entities, about half the
        CPU of reading the rows as entities; on PostgreSQL run on the driver itself (billing/prepared.py)."""
        statement = statement_for(session.get_bind().dialect.name, self.reach)
        connection = await session.connection()
        values = {**parameters, **self.parameters()}
        return await prepared.rows(connection, statement, values)

    def writable(self, column: ColumnElement[int] | Mapped[int] | Mapped[int | None]) -> ColumnElement[bool]:
        """A WHERE clause limiting the account id `column` to the accounts this scope's write paths lock and post
        to: what it reads, and every account for a usage reporter."""
        if self.principal is not None and self.principal.kind is PrincipalKind.USAGE_REPORTER:
            return true()
        return self.accounts(column)
