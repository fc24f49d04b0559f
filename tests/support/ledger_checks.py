"""The ledger invariant, checked wherever a test looks at a balance."""

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.ledger import service as ledger
from models import Account
from tests.support.factories import SYSTEM


async def checked_balance(session: AsyncSession, account: Account | int | None) -> int:
    """The stored balance, after asserting it equals the sum of the account's succeeded entries."""
    account_id = account.id if isinstance(account, Account) else account
    assert account_id is not None
    stored = (await ledger.lock_account(session, SYSTEM, account_id)).balance_minor
    assert stored == await ledger.succeeded_sum(session, SYSTEM, account_id)
    return stored
