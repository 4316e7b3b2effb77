"""The catalogue: units of competency, programmes and partners."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.tables.base import Base, created_at, primary_key


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (
        CheckConstraint("code ~ '^[A-Z0-9]{1,12}$'", name="code_format"),
        CheckConstraint("nominal_hours IS NULL OR nominal_hours >= 0", name="nominal_hours"),
    )

    id: Mapped[int] = primary_key()
    code: Mapped[str] = mapped_column(String(12), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    nominal_hours: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at()


class Programme(Base):
    __tablename__ = "programmes"

    id: Mapped[int] = primary_key()
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at()

    programme_units: Mapped[list[ProgrammeUnit]] = relationship(
        lazy="raise", order_by="ProgrammeUnit.position", back_populates="programme"
    )


class ProgrammeUnit(Base):
    __tablename__ = "programme_units"

    programme_id: Mapped[int] = mapped_column(
        ForeignKey("programmes.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), primary_key=True, index=True)
    # Keeps the order the units were given in, so every list of a programme's units is stable.
    position: Mapped[int] = mapped_column(SmallInteger)

    programme: Mapped[Programme] = relationship(lazy="raise", back_populates="programme_units")
    unit: Mapped[Unit] = relationship(lazy="raise")


class Partner(Base):
    """An organisation that follows some clients, such as the employer of apprentices."""

    __tablename__ = "partners"

    id: Mapped[int] = primary_key()
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at()
