"""Learners."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.tables.base import Base, created_at, primary_key
from models.tables.catalogue import Partner


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (
        # The USI alphabet leaves out 0, 1, I and O; the check character is verified in Python.
        CheckConstraint("usi IS NULL OR usi ~ '^[2-9A-HJ-NP-Z]{10}$'", name="usi_format"),
    )

    id: Mapped[int] = primary_key()
    client_code: Mapped[str] = mapped_column(String(10), unique=True)
    given_name: Mapped[str | None] = mapped_column(String(100))
    surname: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(254))
    usi: Mapped[str | None] = mapped_column(String(10), unique=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    created_at: Mapped[datetime] = created_at()

    partner: Mapped[Partner | None] = relationship(lazy="raise")
