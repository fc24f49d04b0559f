"""A stand-in for StripeGateway.charge where no Stripe server is needed (outages, the worker loop, counting).

Like Stripe, it replays the first result for a repeated idempotency key without charging again, and finds the
PaymentIntent it made for a ledger entry (the worker asks before charging an entry again).
"""

from dataclasses import replace
from datetime import datetime
from itertools import count

from billing.stripe_gateway import (
    TRANSACTION_ID_KEY,
    ChargeResult,
    PaymentIntentState,
    PaymentProviderUnavailable,
)

SUCCEEDED = ChargeResult("succeeded", None, None, None, None)
_intents = count(1)


class FakeGateway:
    def __init__(self, outcome: ChargeResult | PaymentProviderUnavailable = SUCCEEDED) -> None:
        self.outcome = outcome
        self.results: dict[str, ChargeResult] = {}  # idempotency key -> first result
        self.intents: dict[str, PaymentIntentState] = {}  # our transaction id (metadata) -> its PaymentIntent
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
        assert result.payment_intent_id is not None
        self.intents[metadata[TRANSACTION_ID_KEY]] = PaymentIntentState(
            result.payment_intent_id, result.status, amount_minor, currency, metadata, result
        )
        return result

    async def find_payment_intent(
        self, *, customer_id: str, transaction_id: int, created_after: datetime
    ) -> PaymentIntentState | None:
        return self.intents.get(str(transaction_id))
