"""Data versions: counters every write transaction raises, in the same transaction, for what it changed.

A cached answer is keyed by the versions of everything it was read from (server_cache.py), so a write makes it
unreachable the moment it commits, in every process. `billing/data_version/service.py` decides what a statement
changed; billing/data_version/repository.py reads and raises the counters.
"""

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel


class AccountDataVersion(SQLModel, table=True):
    """One counter per account, raised by every transaction that inserts, updates or deletes rows it owns. No
    foreign key: a transaction that deletes an account still raises its counter as it commits."""

    __tablename__ = "account_data_version"

    account_id: int = Field(primary_key=True)
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class SharedDataVersion(SQLModel, table=True):
    """One counter per table whose rows belong to no single account (FX rates, partners and their grants, partner
    and admin keys), or whose changed rows a statement does not name (an UPDATE by id): raising one changes the
    key of every cached answer."""

    __tablename__ = "shared_data_version"

    name: str = Field(primary_key=True, max_length=64)
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
