"""Recording usage: events from the lead, calling and AI agent services become ledger debits and rollups.

A batch is all or nothing: when any event is invalid the whole batch is rejected with one problem per bad
event and nothing is written, so a client fixes and resends the same batch; events already recorded (same
account and external id) are skipped, so resending is always safe. Every accepted event is debited, even
past a zero balance: usage has happened and is never dropped; the account's funding state tells lead
delivery to stop. Only the ledger's own bound stops debits (an account at -MAX_BALANCE_MINOR), as a problem of
the first event that would cross it.

An event is dated from the start of the previous month (in its account's time zone) until now: a late reporter
has at least a month to send a month's events, and a month's usage overview is final once the month after it
has ended.

A batch of 1,000 events costs the same few statements however many accounts it spans: one lock of the batch's
accounts, one lead-plan check, one duplicate check, the ledger's bulk posting (one entry per account and
category), one bulk insert of the events, one bulk upsert of the rollups (and one of the lead plans' months when
it carries leads), and the auto-recharge check.
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlmodel.ext.asyncio.session import AsyncSession

from billing import money
from billing.auto_recharge import engine as recharge_engine
from billing.errors import DomainError
from billing.events import service as domain_events  # `events` is what record_usage names a batch
from billing.keys.service import Principal
from billing.lead_plans.repository import LeadPlanRepository
from billing.ledger import service as ledger
from billing.months import Month, month_of
from billing.scope import Scope
from billing.usage.repository import UsageRepository
from billing.usage.rollups import RollupIncrement, add_to_rollups
from models import Account, Transaction, TransactionKind, UsageCategory
from models.types import utcnow

MAX_EVENTS_PER_BATCH = 1_000
# Reporting services' clocks drift a little; an event later than this is a bug on their side.
CLOCK_SKEW = timedelta(minutes=5)
MAX_EXTERNAL_ID_LENGTH = 255
# How much of an over-long external id a problem quotes back.
SHOWN_ID_LENGTH = 64
# Far beyond any one model request, and small enough that a month of batches adds up inside a 64-bit rollup.
MAX_TOKENS_PER_EVENT = 10**12
# The most one event may cost, in whole units of its account's currency: far beyond any lead, call or model
# request, and a full batch of them (10^9 units) stays far inside the ledger's bound (10^13 in EUR).
MAX_COST_PER_EVENT = 1_000_000

_KIND = {
    UsageCategory.LEAD: TransactionKind.USAGE_LEADS,
    UsageCategory.CALL: TransactionKind.USAGE_CALLS,
    UsageCategory.AI_AGENT: TransactionKind.USAGE_AI_AGENT,
}


class UsageEvent(NamedTuple):
    """One reported event. `cost` is in the account's billing currency, with at most its decimals. Immutable,
    and a tuple rather than a frozen dataclass: the API builds a batch's 1,000 of them per call, and a frozen
    dataclass's constructor (a setattr per field) was a third of that."""

    external_id: str
    account_id: int
    occurred_at: datetime
    category: str
    cost: Decimal | str  # text as the client sent it is parsed strictly here, with the event's other problems
    lead_plan_id: int | None = None  # lead
    duration_seconds: int | None = None  # call
    input_tokens: int | None = None  # AI agent
    output_tokens: int | None = None  # AI agent


@dataclass(frozen=True)
class EventProblem:
    index: int  # position in the batch
    external_id: str
    field: (
        str  # as UsageEvent names it (or "events", the batch itself); the API's edge names it for its clients
    )
    message: str


class UsageRejected(DomainError):
    """The batch was not recorded, because of these events (an event can have several problems)."""

    def __init__(self, problems: list[EventProblem], message: str | None = None) -> None:
        invalid = len({problem.index for problem in problems})
        events = "1 usage event is" if invalid == 1 else f"{invalid} usage events are"
        super().__init__(message or f"{events} invalid; nothing was recorded")
        self.problems = problems


@dataclass(frozen=True)
class UsageRecorded:
    recorded: int
    duplicates: int  # already recorded by an earlier call (or repeated within this batch)
    transactions: list[Transaction]  # the debits, one per account and category


@dataclass
class _Group:
    """The new events of one account and category in this batch: one ledger entry."""

    rows: list[dict[str, object]] = field(default_factory=list)
    cost_minor: int = 0
    seconds: int = 0
    tokens: int = 0


async def record_usage(
    session: AsyncSession, principal: Principal, events: Sequence[UsageEvent], *, now: datetime | None = None
) -> UsageRecorded:
    """Validate the whole batch, then debit, store and roll up its new events in the caller's transaction."""
    now = now or utcnow()
    if len(events) > MAX_EVENTS_PER_BATCH:
        too_many = f"at most {MAX_EVENTS_PER_BATCH:,} events per call; split the batch"
        first_over = events[MAX_EVENTS_PER_BATCH]
        raise UsageRejected(
            [EventProblem(MAX_EVENTS_PER_BATCH, _shown_id(first_over.external_id), "events", too_many)],
            f"{len(events):,} events sent; {too_many}; nothing was recorded",
        )
    # The statements below apply the scope's write rule: a usage reporter debits every account it reports for,
    # yet reads none (billing/scope.py).
    scope = Scope.of(principal)
    # Locked before the duplicate check, so a concurrent copy of this batch waits here and then sees it recorded.
    reported = {event.account_id for event in events} if principal.may_record_usage else set()
    accounts = await ledger.lock_accounts(session, scope, reported)
    lead_plans = LeadPlanRepository(session, scope)
    named = {e.lead_plan_id for e in events if e.lead_plan_id is not None}
    plans = await lead_plans.owners_and_budgets(named) if named else {}
    plan_owners = {plan_id: account_id for plan_id, (account_id, _) in plans.items()}
    earliest = {account_id: _earliest(account, now) for account_id, account in accounts.items()}
    problems: list[EventProblem] = []
    costs: list[int] = []
    for index, event in enumerate(events):
        account = accounts.get(event.account_id)
        found = list(_problems(event, account, earliest.get(event.account_id), plan_owners, now))
        shown_id = _shown_id(event.external_id)
        problems.extend(EventProblem(index, shown_id, name, message) for name, message in found)
        costs.append(0 if found else money.to_minor(event.cost, accounts[event.account_id].currency))
    if problems:
        raise UsageRejected(problems)

    repository = UsageRepository(session, scope)
    seen = await _already_recorded(repository, events)
    groups: dict[tuple[int, UsageCategory], _Group] = defaultdict(_Group)
    rollups: dict[tuple[int, str], RollupIncrement] = defaultdict(RollupIncrement)
    # (account id, lead plan id, month) -> what the batch's leads add to that month of the plan
    plan_months: dict[tuple[int, int, str], int] = defaultdict(int)
    balances = {account_id: account.balance_minor for account_id, account in accounts.items()}
    beyond: set[int] = set()
    for index, (event, cost_minor) in enumerate(zip(events, costs, strict=True)):
        key = (event.account_id, event.external_id)
        if key in seen:
            continue
        seen.add(key)
        account = accounts[event.account_id]
        before = balances[event.account_id]
        after = balances[event.account_id] = before - cost_minor
        # The batch's sum, checked here so the event that crosses the ledger's bound is named (once per account).
        if ledger.leaves_range(before, after) and event.account_id not in beyond:
            beyond.add(event.account_id)
            problems.append(EventProblem(index, _shown_id(event.external_id), "cost", _beyond(account)))
        category = UsageCategory(event.category)
        group = groups[(event.account_id, category)]
        group.rows.append(_row(event, cost_minor, account.currency, now))
        group.cost_minor += cost_minor
        group.seconds += event.duration_seconds or 0
        group.tokens += (event.input_tokens or 0) + (event.output_tokens or 0)
        month = str(month_of(event.occurred_at, account.time_zone))
        if category is UsageCategory.LEAD and event.lead_plan_id is not None:
            plan_months[(event.account_id, event.lead_plan_id, month)] += cost_minor
        rollups[(event.account_id, month)].add(
            category,
            cost_minor,
            seconds=event.duration_seconds or 0,
            input_tokens=event.input_tokens or 0,
            output_tokens=event.output_tokens or 0,
        )
    if problems:
        raise UsageRejected(problems)

    ordered = sorted(groups.items())
    postings = await ledger.post_many(
        session,
        scope,
        [
            ledger.NewEntry(
                account_id=account_id,
                kind=_KIND[category],
                amount_minor=-group.cost_minor,
                description=_describe(category, group),
                idempotency_key=_debit_key(category, (str(row["external_id"]) for row in group.rows)),
            )
            for (account_id, category), group in ordered
        ],
    )
    for (_, group), posting in zip(ordered, postings, strict=True):
        for row in group.rows:
            row["transaction_id"] = posting.transaction.id
    new_rows = [row for group in groups.values() for row in group.rows]
    if new_rows:
        await repository.insert_events(new_rows)
        await add_to_rollups(repository, rollups)
        spent_after = await lead_plans.add_to_monthly_spending(plan_months) if plan_months else {}
        reached = _budgets_reached(spent_after, plan_months, plans, accounts)
        if reached:
            domain_events.record(session, *reached)
        debited = sorted({account_id for account_id, _ in groups})
        await recharge_engine.schedule_if_low(session, scope, [accounts[a] for a in debited], now=now)
    return UsageRecorded(
        recorded=len(new_rows),
        duplicates=len(events) - len(new_rows),
        transactions=[posting.transaction for posting in postings],
    )


def _budgets_reached(
    spent_after: dict[tuple[int, int, str], int],
    added: dict[tuple[int, int, str], int],
    plans: dict[int, tuple[int, int]],
    accounts: dict[int, Account],
) -> list[domain_events.LeadBudgetReached]:
    """Each plan month whose spending this batch carried from below the plan's monthly budget to at least it."""
    reached = []
    for (account_id, plan_id, month), after in sorted(spent_after.items()):
        _, budget = plans[plan_id]
        before = after - added[(account_id, plan_id, month)]
        if before < budget <= after:
            currency = accounts[account_id].currency
            reached.append(
                domain_events.LeadBudgetReached(account_id, plan_id, month, budget, after, currency)
            )
    return reached


def _problems(
    event: UsageEvent,
    account: Account | None,
    earliest: datetime | None,
    plan_owners: dict[int, int],
    now: datetime,
) -> Iterable[tuple[str, str]]:
    """(field, message) for everything wrong with one event. `earliest` is the account's `_earliest`."""
    if not event.external_id or len(event.external_id) > MAX_EXTERNAL_ID_LENGTH:
        yield "external_id", f"must be 1 to {MAX_EXTERNAL_ID_LENGTH} characters"
    if account is None:
        # Unknown and not-yours read the same, so ids of other accounts cannot be probed.
        yield "account_id", "account not found"
    if event.occurred_at.tzinfo is None:
        yield "occurred_at", "needs a UTC offset"
    elif event.occurred_at > now + CLOCK_SKEW:
        yield "occurred_at", "is in the future"
    elif earliest is not None and event.occurred_at < earliest:
        yield (
            "occurred_at",
            f"must not be before {earliest.isoformat()}, the start of the previous month in the account's time"
            " zone; earlier months are closed",
        )
    if event.category not in _KIND:
        yield "category", "must be one of " + ", ".join(f"'{category}'" for category in _KIND)
    if account is not None:
        try:
            cost_minor = money.to_minor(event.cost, account.currency)
        except money.InvalidAmount as error:
            yield "cost", error.problem
        else:
            ceiling = MAX_COST_PER_EVENT * 10 ** money.exponent(account.currency)
            if cost_minor < 0:
                yield "cost", "must not be negative"
            elif cost_minor > ceiling:
                yield "cost", f"must be at most {money.format_money(ceiling, account.currency)}"
    yield from _category_problems(event, plan_owners)


def _earliest(account: Account, now: datetime) -> datetime:
    """The first instant an event of the account may be dated: the start of the previous month in its zone."""
    this = month_of(now, account.time_zone)
    previous = Month(this.year - 1, 12) if this.month == 1 else Month(this.year, this.month - 1)
    start, _ = previous.bounds(account.time_zone)
    return start


def _beyond(account: Account) -> str:
    """The problem of the event whose debit would take its account's balance beyond the ledger's bound."""
    bound = money.format_money(-ledger.MAX_BALANCE_MINOR, account.currency)
    return f"would take the account's balance below {bound}, the lowest an account may hold; add funds first"


def _shown_id(external_id: str) -> str:
    """The external id as a problem quotes it: an over-long one (itself the problem) is cut, never echoed whole."""
    if len(external_id) <= MAX_EXTERNAL_ID_LENGTH:
        return external_id
    return external_id[:SHOWN_ID_LENGTH] + "…"


def _category_problems(event: UsageEvent, plan_owners: dict[int, int]) -> Iterable[tuple[str, str]]:
    if event.category == UsageCategory.LEAD:
        if event.lead_plan_id is None:
            yield "lead_plan_id", "a lead names the lead plan it counts against"
        elif plan_owners.get(event.lead_plan_id) != event.account_id:
            yield "lead_plan_id", "not a lead plan of this account"
    elif event.category == UsageCategory.CALL:
        if event.duration_seconds is None or event.duration_seconds < 0:
            yield "duration_seconds", "a call needs a duration of zero seconds or more"
    elif event.category == UsageCategory.AI_AGENT:
        for name, tokens in (("input_tokens", event.input_tokens), ("output_tokens", event.output_tokens)):
            if tokens is None or tokens < 0:
                yield name, "an AI agent request needs a token count of zero or more"
            elif tokens > MAX_TOKENS_PER_EVENT:
                yield name, f"must be at most {MAX_TOKENS_PER_EVENT:,}"


async def _already_recorded(usage: UsageRepository, events: Sequence[UsageEvent]) -> set[tuple[int, str]]:
    """(account id, external id) pairs of the batch that are stored already: one statement for the batch."""
    if not events:
        return set()
    return await usage.recorded({(event.account_id, event.external_id) for event in events})


def _row(event: UsageEvent, cost_minor: int, currency: str, now: datetime) -> dict[str, object]:
    return {
        "account_id": event.account_id,
        "external_id": event.external_id,
        "category": event.category,
        "occurred_at": event.occurred_at,
        "cost_minor": cost_minor,
        "currency": currency,
        "lead_plan_id": event.lead_plan_id if event.category == UsageCategory.LEAD else None,
        "duration_seconds": event.duration_seconds if event.category == UsageCategory.CALL else None,
        "input_tokens": event.input_tokens if event.category == UsageCategory.AI_AGENT else None,
        "output_tokens": event.output_tokens if event.category == UsageCategory.AI_AGENT else None,
        "recorded_at": now,
    }


def _describe(category: UsageCategory, group: _Group) -> str:
    count = len(group.rows)
    if category is UsageCategory.LEAD:
        return f"Leads: {count} delivered"
    if category is UsageCategory.CALL:
        return f"Calls: {count} ({group.seconds / 60:.1f} min)"
    return f"Claude Agent: {count} requests ({group.tokens:,} tokens)"


def _debit_key(category: UsageCategory, external_ids: Iterable[str]) -> str:
    """Derived from the events the entry carries: the same events can never be debited twice."""
    digest = hashlib.sha256("\n".join(sorted(external_ids)).encode()).hexdigest()[:40]
    return f"usage:{category}:{digest}"
