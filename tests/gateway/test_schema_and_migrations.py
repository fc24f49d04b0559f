"""The committed schema.graphql matches the code, and the migrated database matches the models."""

from pathlib import Path
from typing import Any

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

from root.schema import sdl

ROOT = Path(__file__).resolve().parents[2]


def test_schema_graphql_is_regenerated() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == sdl(), "schema.graphql drifted from the code: run `make schema` and commit it"


async def test_migrations_build_exactly_the_models(connection: AsyncConnection) -> None:
    def diff(sync_connection: Connection) -> list[Any]:
        context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    assert await connection.run_sync(diff) == []


async def test_graphiql_page_is_served_offline(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "query BillingPage" in response.text
    for asset in ("/static/graphiql/graphiql.min.js", "/static/graphiql/graphiql.min.css"):
        assert asset in response.text
        assert (await client.get(asset)).status_code == 200
