"""Settings read from the environment (and a `.env` file when present)."""

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_ROOT = Path(__file__).resolve().parent.parent
# Local state of `make run` (the SQLite database, the demo keys); BILLING_VAR_DIR moves it (tests do).
VAR_DIR = Path(os.environ.get("BILLING_VAR_DIR") or _ROOT / "var")
# The webhook secret `make run` gives its Stripe stand-in: public, so production refuses it.
DEVELOPMENT_WEBHOOK_SECRET = "whsec_test_secret"


def _rate_limit(value: str) -> str:
    """A limit in the `limits` notation ("10/minute", "100 per hour"), checked when the settings load."""
    limits.parse(value)
    return value


RateLimit = Annotated[str, AfterValidator(_rate_limit)]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'billing.db'}"
    host: str = "127.0.0.1"
    port: int = 8000
    # Production hides the schema unless asked for; development always shows it.
    graphiql: bool | None = None
    introspection: bool | None = None

    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    # Points the SDK at a Stripe-compatible server (localstripe in development and tests).
    stripe_api_base: str | None = None
    stripe_timeout_seconds: float = 20.0
    stripe_max_network_retries: int = 2
    # Webhooks signed longer ago than this are refused (replay protection).
    stripe_webhook_tolerance_seconds: int = 300
    portal_return_url_allowlist: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1", "http://localhost"]
    )

    # Top-up bounds in minor units of the account's currency.
    min_top_up_minor: int = 500
    max_top_up_minor: int = 1_000_000
    # An account without auto-recharge is "low" below this (minor units); with it, below its threshold.
    low_balance_threshold_minor: int = 1_000
    # The auto-recharge worker runs inside the gateway by default; turn off where `cli worker` runs apart.
    embedded_worker: bool = True
    worker_poll_seconds: float = 5.0

    # Connections per process: a request holds one only while a statement block runs, never across a
    # Stripe call. When none frees up within `db_pool_timeout_seconds` the request is shed with a 503.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout_seconds: float = 5.0
    # SQLite: how long a writer waits for the write lock before the request is shed with a 503.
    sqlite_busy_timeout_seconds: float = 10.0
    # What a shed request tells the client to wait before retrying.
    retry_after_seconds: int = 2

    # A worker holds a recharge for `recharge_lease_seconds`, renewed every `recharge_heartbeat_seconds` while
    # it charges: one that dies mid-charge delays the account's recharge by at most the lease.
    recharge_lease_seconds: float = 30.0
    recharge_heartbeat_seconds: float = 10.0
    # Every worker reconciles payments left pending for `reconcile_pending_seconds` this often (no cron).
    reconcile_interval_seconds: float = 60.0
    reconcile_pending_seconds: float = 600.0

    # Failed authentication (a wrong, unknown or revoked key) allowed per key prefix and per client address
    # before further failures answer 429; a right key is never refused (see billing/keys/throttle.py).
    auth_failures_per_key_prefix: RateLimit = "10/minute"
    auth_failures_per_address: RateLimit = "30/minute"
    # Where failures are counted: unset, in this process; a Redis URL (redis://host:6379/0), shared by
    # every gateway using it. It also carries live updates between processes and counts subscription
    # connections per key across gateways (README "Live updates").
    redis_url: str | None = None
    # The prefix of this deployment's Redis keys and channels for those: deployments sharing a Redis set
    # different ones.
    redis_namespace: str = Field(default="billing", min_length=1, max_length=64)
    # Comma-separated proxy addresses (or "*") whose X-Forwarded-For names the client; by default none is
    # trusted and the client is the connection's peer (passed to uvicorn as `forwarded_allow_ips`).
    forwarded_allow_ips: str = ""
    # On SIGTERM, requests in flight get this long to finish before their connections are closed.
    shutdown_grace_seconds: int = 10
    # Production refuses to start on SQLite or with a Stripe test key unless these say it is meant.
    allow_sqlite_in_production: bool = False
    allow_stripe_test_key_in_production: bool = False
    # Webhooks signed further ahead of our clock than this are refused (a forged or mis-set timestamp).
    stripe_webhook_future_tolerance_seconds: int = 60

    # Bounded cost per GraphQL request, decided before any resolver runs (README "Limits"): each refusal is
    # an error whose `extensions.code` names the limit, with `limit` and `actual`.
    graphql_max_body_bytes: int = Field(default=1_048_576, gt=0)
    graphql_max_tokens: int = Field(default=2_000, gt=0)
    graphql_max_depth: int = Field(default=12, gt=0)
    graphql_max_aliases: int = Field(default=30, ge=0)
    graphql_max_root_fields: int = Field(default=20, gt=0)
    # Fields under a response name selected twice in one selection set (with the fields below them):
    # validation compares each two, so `{ account { name name … } }` would take time quadratic in them.
    graphql_max_repeated_fields: int = Field(default=50, ge=0)
    # Every field costs 1; a connection costs 1 plus `first` times what it selects (root/limits.py).
    graphql_max_cost: int = Field(default=20_000, gt=0)
    # A request still running after this long is cancelled and answered REQUEST_TIMEOUT. Longer than one
    # Stripe call (STRIPE_TIMEOUT_SECONDS); a charge cut short is settled by reconciliation like a crash.
    graphql_timeout_seconds: float = Field(default=30.0, gt=0)
    # PostgreSQL's statement_timeout on every connection of the gateway, the worker and `cli`: a statement
    # (lock waits included) never outlives the request that waits for it, even where cancelling the request
    # does not reach the server. At most GRAPHQL_TIMEOUT_SECONDS; shorter ones fail requests that merely
    # queue for a busy account's row lock under load.
    db_statement_timeout_seconds: float = Field(default=30.0, gt=0)

    # Outgoing webhooks: each attempt gets this long; endpoints on loopback are allowed outside production
    # (a receiver on this machine), never private, link-local or reserved addresses, nor plain http in production.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_allow_loopback: bool | None = None
    # The worker's delivery loop looks for due deliveries this often when it found none (it runs beside the
    # auto-recharge loop, never waiting for it).
    webhook_poll_seconds: float = Field(default=1.0, gt=0)

    # GraphQL subscriptions over WebSocket (graphql-transport-ws): open connections per API key (across
    # gateways with REDIS_URL, else in each process), subscriptions per connection, how long a new socket may
    # wait before `connection_init`, how often the server pings and how long it waits for the `pong` before
    # closing 4504, and how often a connection's key is checked again (a revoked key's subscriptions close
    # within this, and before any event is sent). With Redis, a gateway renews its connections' count every
    # third of `subscription_connection_ttl_seconds`: those of one that was killed are released after it.
    subscription_connections_per_key: int = Field(default=10, gt=0)
    subscription_max_per_connection: int = Field(default=20, gt=0)
    subscription_init_timeout_seconds: float = Field(default=10.0, gt=0)
    subscription_ping_seconds: float = Field(default=15.0, gt=0)
    subscription_pong_timeout_seconds: float = Field(default=10.0, gt=0)
    subscription_key_check_seconds: float = Field(default=5.0, gt=0)
    subscription_connection_ttl_seconds: float = Field(default=30.0, gt=0)

    # Trusted documents (persisted operations, server_trusted_documents.py): the manifest of the registered
    # documents, read and validated at start; with `trusted_documents_only`, member keys may run only those.
    trusted_documents_manifest: Path = _ROOT / "trusted_documents" / "manifest.json"
    trusted_documents_only: bool = False
    # The response cache of registered queries (server_cache.py): bytes per process, 0 for none. On by default:
    # every answer it serves is as fresh as the data versions it is keyed by (billing/data_version/service.py),
    # a miss costs one statement more, and 16 MiB keeps a process well under its memory budget.
    response_cache_max_bytes: int = Field(default=16 * 1024 * 1024, ge=0)

    # Logs go to stderr: JSON lines, or `console` for a person (the default when stderr is a terminal).
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.is_production

    @property
    def webhook_loopback_allowed(self) -> bool:
        return (
            self.webhook_allow_loopback if self.webhook_allow_loopback is not None else not self.is_production
        )

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else not self.is_production
