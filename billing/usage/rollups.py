"""Monthly usage rollups: a row per account and month, incremented in the transaction recording the usage."""

from dataclasses import asdict, dataclass

from billing.usage.repository import UsageRepository
from models import UsageCategory


@dataclass
class RollupIncrement:
    """What one batch adds to one account's month; field names are UsageRollup's columns."""

    lead_spent_minor: int = 0
    leads: int = 0
    call_spent_minor: int = 0
    calls: int = 0
    call_seconds: int = 0
    ai_cost_minor: int = 0
    ai_requests: int = 0
    ai_input_tokens: int = 0
    ai_output_tokens: int = 0

    def add(
        self, category: str, cost_minor: int, *, seconds: int, input_tokens: int, output_tokens: int
    ) -> None:
        if category == UsageCategory.LEAD:
            self.lead_spent_minor += cost_minor
            self.leads += 1
        elif category == UsageCategory.CALL:
            self.call_spent_minor += cost_minor
            self.calls += 1
            self.call_seconds += seconds
        else:
            self.ai_cost_minor += cost_minor
            self.ai_requests += 1
            self.ai_input_tokens += input_tokens
            self.ai_output_tokens += output_tokens


async def add_to_rollups(
    rollups: UsageRepository, increments: dict[tuple[int, str], RollupIncrement]
) -> None:
    """One upsert for every (account id, 'YYYY-MM') of the batch; concurrent batches add, never overwrite."""
    if not increments:
        return
    rows = [
        {"account_id": account_id, "month": month, **asdict(increment)}
        for (account_id, month), increment in sorted(increments.items())
    ]
    await rollups.add_to_rollups(rows)
