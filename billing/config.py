"""Settings read from the environment (and a `.env` file when present)."""

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path(__file__).resolve().parent.parent / "var"


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
    stripe_publishable_key: str | None = None
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

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.is_production

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else not self.is_production
