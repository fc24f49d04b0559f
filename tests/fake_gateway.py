"""A stand-in for StripeGateway.charge where no Stripe server is needed (outages, the worker loop, counting).

Like Stripe, it replays the first result for a repeated idempotency key without charging again.
"""

from dataclasses import replace
from itertools import count

from billing.stripe_gateway import ChargeResult, PaymentProviderUnavailable

SUCCEEDED = ChargeResult("succeeded", None, None, None, None)
_intents = count(1)


class FakeGateway:
    def __init__(self, outcome: ChargeResult | PaymentProviderUnavailable = SUCCEEDED) -> None:
        self.outcome = outcome
        self.results: dict[str, ChargeResult] = {}  # idempotency key -> first result
        self.calls: list[str] = []

    @property
    def charges(self) -> int:
        """Distinct charges made: replays of a key are not charges."""
        return len(self.results)

    async def charge(
        self,
        *,
        customer_id: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        off_session: bool,
        description: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        self.calls.append(idempotency_key)
        if idempotency_key in self.results:
            return self.results[idempotency_key]
        if isinstance(self.outcome, PaymentProviderUnavailable):
            raise self.outcome
        result = replace(self.outcome, payment_intent_id=f"pi_fake_{next(_intents)}")
        self.results[idempotency_key] = result
        return result
