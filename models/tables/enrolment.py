"""Clients in occurrences: enrolments, results and their history, links, attendance."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.enums import OUTCOME_CODES, EnrolmentStatus, ResultSource
from models.tables.base import Base, created_at, primary_key
from models.tables.catalogue import Unit
from models.tables.delivery import AttendanceType, Class, Occurrence
from models.tables.people import Client

_OUTCOME_CHECK = f"outcome IS NULL OR outcome IN ({', '.join(str(code) for code in OUTCOME_CODES)})"


class Enrolment(Base):
    __tablename__ = "enrolments"
    __table_args__ = (
        CheckConstraint("start_date <= end_date", name="dates_ordered"),
        # At most one live enrolment per client and occurrence; cancelled and deleted ones stay
        # as history, so the client may be enrolled again.
        Index(
            "uq_enrolments_live_client_occurrence",
            "client_id",
            "occurrence_id",
            unique=True,
            postgresql_where=text("status <> 'CANCELLED' AND deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = primary_key()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("occurrences.id"), index=True)
    status: Mapped[EnrolmentStatus] = mapped_column(
        Enum(EnrolmentStatus, native_enum=False, length=20, name="status", create_constraint=True),
        default=EnrolmentStatus.ACTIVE,
    )
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    withdrawn_on: Mapped[date | None] = mapped_column(Date)
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
    # Roll-up bookkeeping on administrative enrolments. A change to any input of the roll-up
    # increments roll_up_version in the change's transaction; the roll-up copies the version it
    # computed from. The roll-up is pending while the two differ.
    roll_up_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    roll_up_computed_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    roll_up_computed_at: Mapped[datetime | None]

    client: Mapped[Client] = relationship(lazy="raise")
    occurrence: Mapped[Occurrence] = relationship(lazy="raise")


class EnrolledUnit(Base):
    """One unit of an enrolment: the GraphQL ``Result``."""

    __tablename__ = "enrolled_units"
    __table_args__ = (
        UniqueConstraint("enrolment_id", "unit_id"),
        CheckConstraint(
            "start_date IS NULL OR end_date IS NULL OR start_date <= end_date", name="dates_ordered"
        ),
        CheckConstraint(_OUTCOME_CHECK, name="outcome_code"),
    )

    id: Mapped[int] = primary_key()
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    outcome: Mapped[int | None] = mapped_column(SmallInteger)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    source: Mapped[ResultSource] = mapped_column(
        Enum(ResultSource, native_enum=False, length=20, name="source", create_constraint=True),
        default=ResultSource.RECORDED,
    )
    # For a rolled-up result: the session result it was taken from.
    source_enrolled_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrolled_units.id"), index=True
    )
    recorded_at: Mapped[datetime | None]
    recorded_by: Mapped[str | None] = mapped_column(String(100))

    enrolment: Mapped[Enrolment] = relationship(lazy="raise")
    unit: Mapped[Unit] = relationship(lazy="raise")


class EnrolledUnitHistory(Base):
    """The value an enrolled unit had before an overwrite; rows are only ever added."""

    __tablename__ = "enrolled_unit_history"
    __table_args__ = (CheckConstraint(_OUTCOME_CHECK, name="outcome_code"),)

    id: Mapped[int] = primary_key()
    enrolled_unit_id: Mapped[int] = mapped_column(ForeignKey("enrolled_units.id"), index=True)
    outcome: Mapped[int | None] = mapped_column(SmallInteger)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    source: Mapped[ResultSource] = mapped_column(
        Enum(ResultSource, native_enum=False, length=20, name="source", create_constraint=True)
    )
    source_enrolled_unit_id: Mapped[int | None] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime | None]
    recorded_by: Mapped[str | None] = mapped_column(String(100))
    replaced_at: Mapped[datetime] = created_at()
    replaced_by: Mapped[str | None] = mapped_column(String(100))


class EnrolmentLink(Base):
    """A session enrolment linked to the administrative enrolment of the same client."""

    __tablename__ = "enrolment_links"
    __table_args__ = (
        CheckConstraint(
            "administrative_enrolment_id <> session_enrolment_id", name="distinct_enrolments"
        ),
        CheckConstraint("unlinked_at IS NULL OR unlinked_at >= linked_at", name="times_ordered"),
        CheckConstraint(
            "(unlinked_at IS NULL) = (unlink_reason IS NULL)", name="unlink_reason_with_time"
        ),
        # A session enrolment has at most one active link; closed links stay as history.
        Index(
            "uq_enrolment_links_active_session",
            "session_enrolment_id",
            unique=True,
            postgresql_where=text("unlinked_at IS NULL"),
        ),
        Index("ix_enrolment_links_session_enrolment_id", "session_enrolment_id"),
    )

    id: Mapped[int] = primary_key()
    administrative_enrolment_id: Mapped[int] = mapped_column(
        ForeignKey("enrolments.id"), index=True
    )
    session_enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"))
    linked_at: Mapped[datetime] = created_at()
    linked_by: Mapped[str | None] = mapped_column(String(100))
    unlinked_at: Mapped[datetime | None]
    unlink_reason: Mapped[str | None] = mapped_column(String(200))

    administrative_enrolment: Mapped[Enrolment] = relationship(
        lazy="raise", foreign_keys=[administrative_enrolment_id]
    )
    session_enrolment: Mapped[Enrolment] = relationship(
        lazy="raise", foreign_keys=[session_enrolment_id]
    )


class Attendance(Base):
    __tablename__ = "attendances"
    __table_args__ = (UniqueConstraint("class_id", "enrolment_id"),)

    id: Mapped[int] = primary_key()
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id"))
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    attendance_type_id: Mapped[int] = mapped_column(ForeignKey("attendance_types.id"))
    notes: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = created_at()
    recorded_by: Mapped[str | None] = mapped_column(String(100))

    class_: Mapped[Class] = relationship(lazy="raise")
    enrolment: Mapped[Enrolment] = relationship(lazy="raise")
    attendance_type: Mapped[AttendanceType] = relationship(lazy="raise")
