"""Money owed and paid under an enrolment, in AUD."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.tables.base import Base, created_at, primary_key
from models.tables.enrolment import Enrolment


class Charge(Base):
    __tablename__ = "charges"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = primary_key()
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    amount: Mapped[Decimal]
    description: Mapped[str] = mapped_column(String(200))
    charged_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = created_at()

    enrolment: Mapped[Enrolment] = relationship(lazy="raise")


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = primary_key()
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    amount: Mapped[Decimal]
    paid_on: Mapped[date] = mapped_column(Date)
    method: Mapped[str | None] = mapped_column(String(50))
    reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at()
    recorded_by: Mapped[str | None] = mapped_column(String(100))

    enrolment: Mapped[Enrolment] = relationship(lazy="raise")
