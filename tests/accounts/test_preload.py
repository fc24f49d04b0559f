"""The parts of accounts a query's selection names (schema/preload.py), through fragments, aliases, @skip and
@include, and the same document sent again with other variables."""

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

import resolvers.accounts
from schema.context import Info
from schema.node import to_global_id
from schema.preload import wanted_parts
from tests.support.dashboard import partner_with_accounts
from tests.support.factories import create_account, member_key, partner_key
from tests.support.graphql_client import execute_ok

# Loader names by the fields that ask them (schema.preload.PARTS).
COMPANY = {"CompanyByAccount"}
CARDS = {"PaymentMethodsByAccount"}
USAGE = {"UsageByAccountMonth"}
RATE = {"UsdRateByCurrency"}
PLANS = {"LeadPlansByAccount"}


@pytest.fixture
def wanted(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """[the loaders named by each call of wanted_parts while the test runs]."""
    calls: list[set[str]] = []

    def recording(info: Info, path: Sequence[str]) -> Any:
        parts = wanted_parts(info, path)
        calls.append({loader.__name__ for loader in parts})
        return parts

    monkeypatch.setattr(resolvers.accounts, "wanted_parts", recording)
    return calls


ACCOUNT = """
query Account($withCompany: Boolean!, $skipCards: Boolean!, $month: String) {
  account {
    name
    company @include(if: $withCompany) { legalName }
    paymentMethods @skip(if: $skipCards) { last4 }
    usage(month: $month) { month }
  }
}
"""


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"withCompany": True, "skipCards": False}, COMPANY | CARDS | USAGE),
        ({"withCompany": False, "skipCards": True}, USAGE),
        ({"withCompany": True, "skipCards": True, "month": "2020-01"}, COMPANY),
        ({"withCompany": False, "skipCards": False, "month": None}, CARDS | USAGE),
    ],
)
async def test_the_same_document_with_other_variables_wants_other_parts(
    session: AsyncSession,
    client: httpx.AsyncClient,
    wanted: list[set[str]],
    variables: dict[str, object],
    expected: set[str],
) -> None:
    """Each request's own variables decide, though the document (and its parsed nodes) is the same: the first
    request is the same every time, so a cache keyed on the document alone would answer its parts again."""
    key = await member_key(session, await create_account(session))
    await session.commit()  # releases the savepoint so the app's session sees the rows
    first = {"withCompany": True, "skipCards": False, "month": None}
    await execute_ok(client, key, ACCOUNT, first)
    await execute_ok(client, key, ACCOUNT, variables)
    assert wanted == [COMPANY | CARDS | USAGE, expected]


FRAGMENTS = """
query Node($id: ID!) {
  node(id: $id) {
    id
    ...Money
    ... on Node { ... on Account { cards: paymentMethods { last4 } } }
    ... on Transaction { id }
    ... @skip(if: true) { ... on Account { leadPlans { name } } }
    ... on Account @include(if: true) {
      usage { month }
      later: usage(month: "2020-01") { month }
      company @skip(if: false) { legalName }
    }
  }
}

fragment Money on Account { balance { available { formatted } } }
"""


async def test_fragments_aliases_and_literal_directives(
    session: AsyncSession, client: httpx.AsyncClient, wanted: list[set[str]]
) -> None:
    account = await create_account(session, currency="EUR", country="DE")
    assert account.id is not None
    key = await member_key(session, account)
    await session.commit()  # releases the savepoint so the app's session sees the rows
    for _ in range(2):  # parsed, then from the limits extension's document cache
        await execute_ok(client, key, FRAGMENTS, {"id": to_global_id("Account", account.id)})
    assert wanted == [RATE | CARDS | USAGE | COMPANY] * 2


DASHBOARD = """
query Dashboard($withPlans: Boolean!) {
  accounts(first: 5) {
    edges @include(if: $withPlans) { node { leadPlans { name } } }
    edges { ...Node }
  }
}

fragment Node on AccountEdge { node { company { legalName } } }
"""


async def test_the_accounts_below_edges_and_node(
    session: AsyncSession, client: httpx.AsyncClient, wanted: list[set[str]]
) -> None:
    key = await partner_key(session, await partner_with_accounts(session, 2))
    await session.commit()  # releases the savepoint so the app's session sees the rows
    for with_plans in (True, False, True):
        await execute_ok(client, key, DASHBOARD, {"withPlans": with_plans})
    assert wanted == [PLANS | COMPANY, COMPANY, PLANS | COMPANY]
