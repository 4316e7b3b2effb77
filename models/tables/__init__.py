"""The tables of Enrolink, one module per part of the domain."""

from models.tables.base import Base
from models.tables.catalogue import Partner, Programme, ProgrammeUnit, Unit
from models.tables.delivery import AttendanceType, Class, Occurrence, OccurrenceUnit
from models.tables.enrolment import (
    Attendance,
    EnrolledUnit,
    EnrolledUnitHistory,
    Enrolment,
    EnrolmentLink,
)
from models.tables.money import Charge, Payment
from models.tables.operations import ApiToken, OutboxMessage, ReconciliationCount, ReconciliationRun
from models.tables.people import Client

__all__ = [
    "ApiToken",
    "Attendance",
    "AttendanceType",
    "Base",
    "Charge",
    "Class",
    "Client",
    "EnrolledUnit",
    "EnrolledUnitHistory",
    "Enrolment",
    "EnrolmentLink",
    "Occurrence",
    "OccurrenceUnit",
    "OutboxMessage",
    "Partner",
    "Payment",
    "Programme",
    "ProgrammeUnit",
    "ReconciliationCount",
    "ReconciliationRun",
    "Unit",
]
