"""Delivery of programmes: occurrences, their units, classes and attendance types."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, Enum, ForeignKey, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.enums import AttendanceCounting, OccurrenceKind
from models.tables.base import Base, created_at, primary_key
from models.tables.catalogue import Programme, Unit


class Occurrence(Base):
    __tablename__ = "occurrences"
    __table_args__ = (
        CheckConstraint("start_date <= end_date", name="dates_ordered"),
        CheckConstraint("fee IS NULL OR fee >= 0", name="fee_not_negative"),
        CheckConstraint("fee IS NULL OR kind <> 'SESSION'", name="no_fee_on_session"),
    )

    id: Mapped[int] = primary_key()
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[OccurrenceKind] = mapped_column(
        Enum(OccurrenceKind, native_enum=False, length=20, name="kind", create_constraint=True)
    )
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    location: Mapped[str | None] = mapped_column(String(200))
    fee: Mapped[Decimal | None]
    created_at: Mapped[datetime] = created_at()

    programme: Mapped[Programme] = relationship(lazy="raise")
    occurrence_units: Mapped[list[OccurrenceUnit]] = relationship(
        lazy="raise", order_by="OccurrenceUnit.position", back_populates="occurrence"
    )


class OccurrenceUnit(Base):
    __tablename__ = "occurrence_units"

    occurrence_id: Mapped[int] = mapped_column(
        ForeignKey("occurrences.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(SmallInteger)

    occurrence: Mapped[Occurrence] = relationship(lazy="raise", back_populates="occurrence_units")
    unit: Mapped[Unit] = relationship(lazy="raise")


class Class(Base):
    """A timetabled class of a session or standard occurrence."""

    __tablename__ = "classes"
    __table_args__ = (CheckConstraint("starts_at < ends_at", name="times_ordered"),)

    id: Mapped[int] = primary_key()
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("occurrences.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    location: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at()

    occurrence: Mapped[Occurrence] = relationship(lazy="raise")


class AttendanceType(Base):
    """A configured kind of attendance; its counting gives the sign of the hours it records."""

    __tablename__ = "attendance_types"

    id: Mapped[int] = primary_key()
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    counting: Mapped[AttendanceCounting] = mapped_column(
        Enum(
            AttendanceCounting,
            native_enum=False,
            length=20,
            name="counting",
            create_constraint=True,
        )
    )
