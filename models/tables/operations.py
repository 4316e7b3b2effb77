"""Tables that run the service: the outbox, reconciliation runs and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.enums import TokenRole
from models.tables.base import Base, created_at, primary_key
from models.tables.catalogue import Partner


class OutboxMessage(Base):
    """A task to send once the transaction that wrote it has committed."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay scans rows not yet processed, oldest first.
        Index("ix_outbox_waiting", "created_at", postgresql_where=text("processed_at IS NULL")),
    )

    id: Mapped[int] = primary_key()
    task_name: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at()
    published_at: Mapped[datetime | None]
    publish_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    processed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        CheckConstraint("finished_at IS NULL OR finished_at >= started_at", name="times_ordered"),
    )

    id: Mapped[int] = primary_key()
    trigger: Mapped[str] = mapped_column(String(30))
    started_at: Mapped[datetime] = created_at()
    finished_at: Mapped[datetime | None]

    counts: Mapped[list[ReconciliationCount]] = relationship(
        lazy="raise", order_by="ReconciliationCount.cause"
    )


class ReconciliationCount(Base):
    __tablename__ = "reconciliation_counts"
    __table_args__ = (CheckConstraint("found >= 0 AND repaired >= 0", name="counts_not_negative"),)

    run_id: Mapped[int] = mapped_column(
        ForeignKey("reconciliation_runs.id", ondelete="CASCADE"), primary_key=True
    )
    cause: Mapped[str] = mapped_column(String(40), primary_key=True)
    found: Mapped[int] = mapped_column(Integer)
    repaired: Mapped[int] = mapped_column(Integer)


class ApiToken(Base):
    """An API token; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("(role = 'PARTNER') = (partner_id IS NOT NULL)", name="partner_role"),
    )

    id: Mapped[int] = primary_key()
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[TokenRole] = mapped_column(
        Enum(TokenRole, native_enum=False, length=20, name="role", create_constraint=True)
    )
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    created_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    partner: Mapped[Partner | None] = relationship(lazy="raise")
