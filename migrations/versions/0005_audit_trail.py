"""the audit trail: who made each change (the key's kind, name and prefix) and in which request

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00.000000

Columns on domain_event rather than a table of their own: the audit trail is the settings events, already
written in the change's own transaction by the commit hook, which now stamps them with the actor and the
request id. Existing events keep nulls (nobody recorded who made them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("actor_kind", 32), ("actor_name", 200), ("actor_key_prefix", 16), ("request_id", 128))


def upgrade() -> None:
    for name, length in _COLUMNS:
        op.add_column(
            "domain_event",
            sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=True),
        )
    op.create_index("ix_domain_event_audit", "domain_event", ["account_id", "type", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_domain_event_audit", table_name="domain_event")
    with op.batch_alter_table("domain_event") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
