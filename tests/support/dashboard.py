"""A partner's dashboard over many accounts: the query and the partner, for the statement-count tests."""

from sqlmodel.ext.asyncio.session import AsyncSession

from models import Partner
from tests.support.factories import create_account, create_company, create_partner, create_payment_method

DASHBOARD = """
query Dashboard {
  accounts(first: 100) {
    edges {
      node {
        name
        company { legalName phone }
        balance { available { formatted } usdEquivalent { formatted } fxRate { rate } }
        paymentMethods { last4 isDefault }
        leadPlans { name }
        canAddFunds { ready missingCompanyFields }
        fundingState
        autoRecharge { enabled state }
        usage { month leadSpending { spent { amount } remainingBudget { amount } } calling { minutes }
                aiAgent { totalTokens } }
      }
    }
  }
}
"""


async def partner_with_accounts(session: AsyncSession, count: int) -> Partner:
    accounts = []
    for index in range(count):
        account = await create_account(session, currency="EUR" if index % 2 == 0 else "USD", country="DE")
        await create_company(session, account)
        await create_payment_method(session, account)
        accounts.append(account)
    return await create_partner(session, *accounts)
