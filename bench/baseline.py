"""The raw baseline: the benchmark's operations written by hand on Starlette and asyncpg, no GraphQL library.

It answers the documents in bench/operations.py (looked up by their exact text, as registered operations) with
the same JSON as the gateway, from SQL a competent engineer would write for them: prepared statements (asyncpg
caches them), batched `= ANY($1)` lookups, one pooled connection per request, the row-comparison keyset, money
formatted with Babel patterns cached per locale and currency. The API key is checked as billing/keys/service.py does:
looked up by its prefix, its SHA-256 compared in constant time (also when no key has that prefix).

    BENCH_DATABASE_URL=... uvicorn bench.baseline:app
"""

import base64
import hashlib
import hmac
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from babel import Locale, UnknownLocaleError
from babel.numbers import NumberPattern, get_currency_precision
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bench.config import URL, asyncpg_dsn
from bench.operations import BILLING_PAGE, DASHBOARD, HISTORY, USAGE_OVERVIEW

EMPTY_KEY_HASH = hashlib.sha256(b"").hexdigest()
CROSS_RATE = Context(prec=12, rounding=ROUND_HALF_EVEN)
REQUIRED_COMPANY_FIELDS = [
    ("legal_name", "legalName"),
    ("registration_number", "registrationNumber"),
    ("phone", "phone"),
    ("address_line1", "address.line1"),
    ("city", "address.city"),
    ("postal_code", "address.postalCode"),
    ("country", "address.country"),
]
JSON = dict[str, Any]


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Caller:
    kind: str
    account_id: int | None
    partner_id: int | None


# --- presentation -------------------------------------------------------------------------------------------


def global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode()


def cursor(kind: str, *parts: str) -> str:
    return base64.urlsafe_b64encode("|".join((kind, *parts)).encode()).decode()


def cursor_parts(value: str, kind: str) -> list[str]:
    parts = base64.urlsafe_b64decode(value.encode()).decode().split("|")
    if parts[0] != kind:
        raise BadRequest("after: not a valid cursor")
    return parts[1:]


@cache
def money_format(country: str, currency: str) -> tuple[Locale, NumberPattern, int]:
    """The locale most likely in `country` (DE -> de_DE), its currency pattern and the currency's decimals."""
    try:
        locale = Locale.parse(f"und_{country}")
    except (UnknownLocaleError, ValueError):
        locale = Locale.parse("en_US")
    return locale, locale.currency_formats["standard"], int(get_currency_precision(currency))


def decimal_amount(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-money_format("US", currency)[2])


def formatted(minor: int, currency: str, country: str) -> str:
    locale, pattern, digits = money_format(country, currency)
    return str(pattern.apply(Decimal(minor).scaleb(-digits), locale, currency=currency, currency_digits=True))


def money(minor: int, currency: str, country: str) -> JSON:
    """A Money with every field, in the order the documents select them."""
    return {
        "amount": str(decimal_amount(minor, currency)),
        "currency": currency,
        "formatted": formatted(minor, currency, country),
    }


@cache
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def current_month(time_zone: str) -> str:
    local = datetime.now(UTC).astimezone(zone(time_zone))
    return f"{local.year:04d}-{local.month:02d}"


# --- data ---------------------------------------------------------------------------------------------------

ACCOUNT_COLUMNS = "id, name, currency, country, time_zone, balance_minor"


async def usd_rates(connection: asyncpg.Connection, currencies: set[str]) -> dict[str, tuple[Decimal, date]]:
    """USD per unit of each currency from the latest ECB day that has both rates (EUR's is USD's own row)."""
    lookup = {"USD" if currency == "EUR" else currency for currency in currencies - {"USD"}}
    if not lookup:
        return {}
    rows = await connection.fetch(
        "SELECT DISTINCT ON (b.currency) b.currency, b.rate_date, b.per_eur, u.per_eur AS usd_per_eur"
        " FROM fx_rate b JOIN fx_rate u ON u.currency = 'USD' AND u.rate_date = b.rate_date"
        " WHERE b.currency = ANY($1) ORDER BY b.currency, b.rate_date DESC",
        list(lookup),
    )
    rates: dict[str, tuple[Decimal, date]] = {}
    for row in rows:
        usd = Decimal(row["usd_per_eur"])
        if row["currency"] == "USD":
            rates["EUR"] = (usd, row["rate_date"])
        else:
            rates[row["currency"]] = (CROSS_RATE.divide(usd, Decimal(row["per_eur"])), row["rate_date"])
    return rates


def balance(account: asyncpg.Record, rates: dict[str, tuple[Decimal, date]], *, full: bool) -> JSON:
    """`full`: the Billing page's selection (currency on the USD amount, the rate's source); else the
    dashboard's."""
    minor, currency, country = account["balance_minor"], account["currency"], account["country"]
    available = money(minor, currency, country)
    found = rates.get(currency)
    if found is None:
        return {"available": available, "usdEquivalent": None, "fxRate": None}
    rate, rate_date = found
    usd = int(
        (decimal_amount(minor, currency) * rate).scaleb(2).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    )
    equivalent = money(usd, "USD", country)
    if not full:
        del equivalent["currency"]
    fx_rate: JSON = {"rate": str(rate), "date": rate_date.isoformat()}
    if full:
        fx_rate["source"] = "ECB"
    return {"available": available, "usdEquivalent": equivalent, "fxRate": fx_rate}


async def usage(connection: asyncpg.Connection, accounts: Sequence[asyncpg.Record]) -> dict[int, JSON]:
    """Each account's current month (in its time zone) from the rollups, in the overview's selection."""
    months = {account["id"]: current_month(account["time_zone"]) for account in accounts}
    ids = list(months)
    rollups = {
        row["account_id"]: row
        for row in await connection.fetch(
            "SELECT account_id, month, lead_spent_minor, leads, call_spent_minor, calls, call_seconds,"
            " ai_cost_minor, ai_requests, ai_input_tokens, ai_output_tokens"
            " FROM usage_rollup WHERE account_id = ANY($1) AND month = ANY($2)",
            ids,
            list(set(months.values())),
        )
        if row["month"] == months[row["account_id"]]
    }
    plans = {
        row["account_id"]: (row["count"], row["budget"])
        for row in await connection.fetch(
            "SELECT account_id, count(*) AS count, coalesce(sum(monthly_budget_minor), 0) AS budget"
            " FROM lead_plan_subscription WHERE account_id = ANY($1) AND status = 'active'"
            " GROUP BY account_id",
            ids,
        )
    }
    summaries = {}
    for account in accounts:
        currency, country = account["currency"], account["country"]
        row = rollups.get(account["id"])
        numbers = [row[index] for index in range(2, 11)] if row is not None else [0] * 9
        lead_spent, leads, call_spent, calls, seconds, ai_cost, requests, tokens_in, tokens_out = numbers
        active, budget = plans.get(account["id"], (0, 0))
        summaries[account["id"]] = {
            "month": months[account["id"]],
            "leadSpending": {
                "spent": {"formatted": formatted(lead_spent, currency, country)},
                "leadsReceived": str(leads),
                "activeSubscriptions": active,
                "remainingBudget": {"formatted": formatted(max(0, budget - lead_spent), currency, country)},
            },
            "calling": {
                "spent": {"formatted": formatted(call_spent, currency, country)},
                "calls": str(calls),
                "minutes": str(-(-seconds // 60)),
            },
            "aiAgent": {
                "cost": {"formatted": formatted(ai_cost, currency, country)},
                "requests": str(requests),
                "inputTokens": str(tokens_in),
                "outputTokens": str(tokens_out),
                "totalTokens": str(tokens_in + tokens_out),
            },
        }
    return summaries


async def own_account(connection: asyncpg.Connection, caller: Caller) -> asyncpg.Record:
    if caller.account_id is None:
        raise BadRequest("id: required: this API key is not tied to one account")
    account: asyncpg.Record = await connection.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM account WHERE id = $1", caller.account_id
    )
    return account


def transaction_node(row: asyncpg.Record, country: str, *, with_currency: bool) -> JSON:
    amount = money(row["amount_minor"], row["currency"], country)
    if not with_currency:
        del amount["currency"]
    return {
        "id": global_id("Transaction", row["id"]),
        "createdAt": row["created_at"].isoformat(),
        "description": row["description"],
        "amount": amount,
        "status": row["status"].upper(),
        "kind": row["kind"].upper(),
    }


def transaction_cursor(row: asyncpg.Record) -> str:
    return cursor("transaction", row["created_at"].isoformat(), str(row["id"]))


async def history_rows(
    connection: asyncpg.Connection, account_id: int, first: int, after: str | None, where: JSON | None
) -> list[asyncpg.Record]:
    """`first + 1` entries, newest first; only the conditions asked for, so every plan can use the index."""
    conditions = ["account_id = $1"]
    arguments: list[object] = [account_id]

    def condition(template: str, *values: object) -> None:
        positions = [f"${len(arguments) + offset}" for offset in range(1, len(values) + 1)]
        conditions.append(template.format(*positions))
        arguments.extend(values)

    where = where or {}
    if where.get("kinds"):
        condition("kind = ANY({})", [kind.lower() for kind in where["kinds"]])
    if where.get("statuses"):
        condition("status = ANY({})", [status.lower() for status in where["statuses"]])
    if where.get("since"):
        condition("created_at >= {}", datetime.fromisoformat(where["since"]))
    if where.get("until"):
        condition("created_at < {}", datetime.fromisoformat(where["until"]))
    if after is not None:
        created, entry_id = cursor_parts(after, "transaction")
        condition("(created_at, id) < ({}, {})", datetime.fromisoformat(created), int(entry_id))
    arguments.append(first + 1)
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT id, created_at, description, amount_minor, currency, status, kind FROM ledger_transaction"
        f" WHERE {' AND '.join(conditions)} ORDER BY created_at DESC, id DESC LIMIT ${len(arguments)}",
        *arguments,
    )
    return rows


def page_size(variables: JSON, default: int) -> int:
    first = variables.get("first", default)
    if not isinstance(first, int) or not 1 <= first <= 100:
        raise BadRequest("first: must be between 1 and 100")
    return first


# --- operations ---------------------------------------------------------------------------------------------


async def billing_page(connection: asyncpg.Connection, caller: Caller, variables: JSON) -> JSON:
    account = await own_account(connection, caller)
    account_id, currency, country = account["id"], account["currency"], account["country"]
    rates = await usd_rates(connection, {currency})
    company = await connection.fetchrow(
        "SELECT legal_name, registration_number, phone, address_line1, city, postal_code, country"
        " FROM company WHERE account_id = $1",
        account_id,
    )
    cards = await connection.fetch(
        "SELECT id, brand, last4, exp_month, exp_year, is_default FROM payment_method WHERE account_id = $1"
        " ORDER BY is_default DESC, created_at, id",
        account_id,
    )
    plans = await connection.fetch(
        "SELECT id, name, status, monthly_budget_minor, price_per_lead_minor, currency"
        " FROM lead_plan_subscription WHERE account_id = $1 ORDER BY created_at, id",
        account_id,
    )
    summaries = await usage(connection, [account])
    entries = await history_rows(connection, account_id, 10, None, None)
    missing = [path for column, path in REQUIRED_COMPANY_FIELDS if company is None or not company[column]]
    shown = entries[:10]
    return {
        "account": {
            "id": global_id("Account", account_id),
            "name": account["name"],
            "balance": balance(account, rates, full=True),
            "company": None
            if company is None
            else {
                "legalName": company["legal_name"],
                "registrationNumber": company["registration_number"],
                "phone": company["phone"],
                "address": {
                    "line1": company["address_line1"],
                    "city": company["city"],
                    "postalCode": company["postal_code"],
                    "country": company["country"],
                },
            },
            "canAddFunds": {
                "ready": not missing and bool(cards),
                "missingCompanyFields": missing,
                "hasPaymentMethod": bool(cards),
            },
            "paymentMethods": [
                {
                    "id": global_id("PaymentMethod", card["id"]),
                    "brand": card["brand"],
                    "last4": card["last4"],
                    "expMonth": card["exp_month"],
                    "expYear": card["exp_year"],
                    "isDefault": card["is_default"],
                }
                for card in cards
            ],
            "leadPlans": [
                {
                    "id": global_id("LeadPlan", plan["id"]),
                    "name": plan["name"],
                    "status": plan["status"].upper(),
                    "monthlyBudget": {
                        "formatted": formatted(plan["monthly_budget_minor"], plan["currency"], country)
                    },
                    "pricePerLead": {
                        "formatted": formatted(plan["price_per_lead_minor"], plan["currency"], country)
                    },
                }
                for plan in plans
            ],
            "usage": summaries[account_id],
            "transactions": {
                "edges": [{"node": transaction_node(row, country, with_currency=False)} for row in shown],
                "pageInfo": {
                    "hasNextPage": len(entries) > 10,
                    "endCursor": transaction_cursor(shown[-1]) if shown else None,
                },
            },
        }
    }


async def dashboard(connection: asyncpg.Connection, caller: Caller, variables: JSON) -> JSON:
    first = page_size(variables, 20)
    after = variables.get("after")
    start = int(cursor_parts(after, "account")[0]) if after else 0
    if caller.kind == "partner":
        scope, scope_argument = (
            "id IN (SELECT account_id FROM partner_account WHERE partner_id = $3)",
            caller.partner_id,
        )
    elif caller.kind == "member":
        scope, scope_argument = "id = $3", caller.account_id
    else:
        raise BadRequest("only member and partner keys in this baseline")
    rows = await connection.fetch(
        f"SELECT {ACCOUNT_COLUMNS} FROM account WHERE id > $1 AND {scope} ORDER BY id LIMIT $2",
        start,
        first + 1,
        scope_argument,
    )
    accounts = rows[:first]
    ids = [account["id"] for account in accounts]
    rates = await usd_rates(connection, {account["currency"] for account in accounts})
    companies = {
        row["account_id"]: row
        for row in await connection.fetch(
            "SELECT account_id, legal_name, phone, city, country FROM company WHERE account_id = ANY($1)", ids
        )
    }
    cards: dict[int, list[JSON]] = {account_id: [] for account_id in ids}
    for card in await connection.fetch(
        "SELECT id, account_id, brand, last4, is_default FROM payment_method WHERE account_id = ANY($1)"
        " ORDER BY is_default DESC, created_at, id",
        ids,
    ):
        cards[card["account_id"]].append(
            {
                "id": global_id("PaymentMethod", card["id"]),
                "brand": card["brand"],
                "last4": card["last4"],
                "isDefault": card["is_default"],
            }
        )
    summaries = await usage(connection, accounts) if accounts else {}
    edges = []
    for account in accounts:
        company = companies.get(account["id"])
        summary = summaries[account["id"]]
        ai_agent = summary["aiAgent"]
        edges.append(
            {
                "cursor": cursor("account", str(account["id"])),
                "node": {
                    "id": global_id("Account", account["id"]),
                    "name": account["name"],
                    "balance": balance(account, rates, full=False),
                    "company": None
                    if company is None
                    else {
                        "legalName": company["legal_name"],
                        "phone": company["phone"],
                        "address": {"city": company["city"], "country": company["country"]},
                    },
                    "paymentMethods": cards[account["id"]],
                    "usage": summary
                    | {"aiAgent": {"cost": ai_agent["cost"], "totalTokens": ai_agent["totalTokens"]}},
                },
            }
        )
    return {
        "accounts": {
            "edges": edges,
            "pageInfo": {
                "hasNextPage": len(rows) > first,
                "endCursor": edges[-1]["cursor"] if edges else None,
            },
        }
    }


async def history(connection: asyncpg.Connection, caller: Caller, variables: JSON) -> JSON:
    first = page_size(variables, 20)
    account = await own_account(connection, caller)
    rows = await history_rows(
        connection, account["id"], first, variables.get("after"), variables.get("filter")
    )
    shown = rows[:first]
    edges = [
        {
            "cursor": transaction_cursor(row),
            "node": transaction_node(row, account["country"], with_currency=True),
        }
        for row in shown
    ]
    return {
        "account": {
            "transactions": {
                "edges": edges,
                "pageInfo": {
                    "hasNextPage": len(rows) > first,
                    "endCursor": edges[-1]["cursor"] if edges else None,
                },
            }
        }
    }


async def usage_overview(connection: asyncpg.Connection, caller: Caller, variables: JSON) -> JSON:
    account = await own_account(connection, caller)
    return {"account": {"usage": (await usage(connection, [account]))[account["id"]]}}


Operation = Callable[[asyncpg.Connection, Caller, JSON], Awaitable[JSON]]
OPERATIONS: dict[str, Operation] = {
    BILLING_PAGE: billing_page,
    DASHBOARD: dashboard,
    HISTORY: history,
    USAGE_OVERVIEW: usage_overview,
}


# --- HTTP ---------------------------------------------------------------------------------------------------


def key_prefix(raw_key: str) -> str | None:
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "bk" or len(parts[1]) != 12:
        return None
    return parts[1] if all(character in string.hexdigits for character in parts[1]) else None


async def authenticate(connection: asyncpg.Connection, authorization: str) -> Caller | None:
    raw_key = authorization.removeprefix("Bearer ")
    prefix = key_prefix(raw_key)
    key = None
    if prefix is not None:
        key = await connection.fetchrow(
            "SELECT secret_hash, kind, account_id, partner_id, revoked_at FROM api_key WHERE prefix = $1",
            prefix,
        )
    expected = key["secret_hash"] if key is not None else EMPTY_KEY_HASH
    if not hmac.compare_digest(expected, hashlib.sha256(raw_key.encode()).hexdigest()):
        return None
    if key is None or key["revoked_at"] is not None:
        return None
    return Caller(kind=key["kind"], account_id=key["account_id"], partner_id=key["partner_id"])


async def graphql(request: Request) -> Response:
    body = await request.json()
    operation = OPERATIONS.get(body.get("query"))
    if operation is None:
        return JSONResponse({"errors": [{"message": "not a registered operation"}]}, status_code=400)
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as connection:
        caller = await authenticate(connection, request.headers.get("authorization", ""))
        if caller is None:
            return JSONResponse({"errors": [{"message": "invalid or revoked API key"}]}, status_code=401)
        try:
            data = await operation(connection, caller, body.get("variables") or {})
        except BadRequest as error:
            return JSONResponse({"data": None, "errors": [{"message": str(error)}]})
    return JSONResponse({"data": data})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # As many connections as the gateway's pool (DB_POOL_SIZE, 10).
    app.state.pool = await asyncpg.create_pool(asyncpg_dsn(URL), min_size=10, max_size=10)
    try:
        yield
    finally:
        await app.state.pool.close()


app = Starlette(
    routes=[Route("/graphql", graphql, methods=["POST"]), Route("/healthz", healthz)], lifespan=lifespan
)
