"""recordUsage: only usage reporters (and admins) record usage; the batch is all or nothing."""

from typing import cast

import strawberry

from billing import usage
from resolvers.context import Info
from schema.permissions import PermissionDeniedError
from schema.usage_events import RecordUsagePayload, RecordUsageSuccess, UsageEventInput, rejected


@strawberry.type
class UsageMutation:
    @strawberry.mutation(description=f"Record up to {usage.MAX_EVENTS_PER_BATCH} usage events.")
    async def record_usage(self, info: Info, events: list[UsageEventInput]) -> RecordUsagePayload:
        if not info.context.principal.may_record_usage:
            return PermissionDeniedError(message="only usage reporter keys record usage")
        batch = [event.to_domain(index) for index, event in enumerate(events)]
        try:
            async with info.context.atomic() as session:
                result = await usage.record_usage(session, info.context.principal, batch)
        except usage.UsageRejected as error:
            return cast(RecordUsagePayload, rejected(error))
        return RecordUsageSuccess(recorded=result.recorded, duplicates=result.duplicates)
