"""Where the benchmark's database is: BENCH_DATABASE_URL, by default `billing_bench` on the local server."""

import os

URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/billing_bench")


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL (postgresql+asyncpg://...) as asyncpg takes it."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
