"""recordUsage: only usage reporters (and admins) record usage; the batch is all or nothing."""

from typing import Annotated

import strawberry

from billing.usage import service as usage
from resolvers.mutation import answered
from schema.context import Info
from schema.permissions import PermissionDeniedError
from schema.usage import RECORD_USAGE_ERRORS, RecordUsagePayload, RecordUsageSuccess, UsageEventInput


@strawberry.type
class UsageMutation:
    @strawberry.mutation(
        description=f"Record up to {usage.MAX_EVENTS_PER_BATCH:,} usage events, each costing at most"
        f" {usage.MAX_COST_PER_EVENT:,} in its account's currency and dated from the start of the previous month"
        " (in its account's time zone) until now."
    )
    async def record_usage(
        self,
        info: Info,
        # UsageEventInput builds the domain's events itself (schema/usage.py).
        events: Annotated[list[usage.UsageEvent], strawberry.argument(graphql_type=list[UsageEventInput])],
    ) -> RecordUsagePayload:
        # Before anything else but parsing (global IDs too, which say nothing of any account): a key that may not
        # record usage learns nothing about the batch or the accounts.
        if not info.context.principal.may_record_usage:
            return PermissionDeniedError(message="only usage reporter keys record usage")

        async def work() -> RecordUsageSuccess:
            async with info.context.atomic() as session:
                result = await usage.record_usage(session, info.context.principal, events)
            return RecordUsageSuccess(recorded=result.recorded, duplicates=result.duplicates)

        return await answered(RECORD_USAGE_ERRORS, None, work)
