"""SQLModel tables, one module per domain. Importing this package registers every table in the metadata."""

from models.accounts import Account, Company
from models.auto_recharge import AutoRechargeSettings, AutoRechargeState, Recharge, RechargeStatus
from models.data_version import AccountDataVersion, SharedDataVersion
from models.events import DomainEventRow
from models.fx import FxRate
from models.keys import ApiKey, Partner, PartnerAccount, PrincipalKind
from models.lead_plans import LeadPlanRollup, LeadPlanStatus, LeadPlanSubscription
from models.ledger import Transaction, TransactionKind, TransactionStatus
from models.outgoing_webhooks import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from models.payment_methods import PaymentMethod
from models.stripe_webhooks import StripeEvent
from models.usage import UsageCategory, UsageEvent, UsageRollup

__all__ = [
    "Account",
    "AccountDataVersion",
    "ApiKey",
    "AutoRechargeSettings",
    "AutoRechargeState",
    "Company",
    "DomainEventRow",
    "FxRate",
    "LeadPlanRollup",
    "LeadPlanStatus",
    "LeadPlanSubscription",
    "Partner",
    "PartnerAccount",
    "PaymentMethod",
    "PrincipalKind",
    "Recharge",
    "RechargeStatus",
    "SharedDataVersion",
    "StripeEvent",
    "Transaction",
    "TransactionKind",
    "TransactionStatus",
    "UsageCategory",
    "UsageEvent",
    "UsageRollup",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "WebhookEndpointStatus",
]
