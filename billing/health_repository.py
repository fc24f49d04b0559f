"""Reads about the database itself, not about any account's rows: so no scope."""

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession


async def database_answers(session: AsyncSession) -> None:
    """Raises unless the database runs a statement (what the readiness probe asks)."""
    await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
