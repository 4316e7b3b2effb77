"""The rows each caller may read, as SQL conditions added where each type is loaded.

Staff read everything. A partner token reads its own clients (``Client.partner_id``) and their
enrolments that are not deleted. Through those it reads their results, attendance, payments,
charges and the links between two such enrolments. It also reads the occurrences the
enrolments are in, with their classes and programmes, the units of those occurrences,
programmes and results, and its own partner row. Reconciliation runs are operational data and
stay with staff.

Every loader and root list passes its statement through :func:`restrict`, so a row outside the
scope is never read and looks exactly like a row that does not exist. A table with no rule here
is hidden from partners, so a new table stays private until a rule for it is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Select, false, inspect, select, true, union

from models import tables
from models.enums import TokenRole
from schema.context import Caller

Condition = ColumnElement[bool]
Ts = TypeVarTuple("Ts")


def _partner_clients(partner_id: int) -> Select[Any]:
    return select(tables.Client.id).where(tables.Client.partner_id == partner_id)


def _enrolments(partner_id: int) -> Select[Any]:
    return select(tables.Enrolment.id).where(
        tables.Enrolment.client_id.in_(_partner_clients(partner_id)),
        tables.Enrolment.deleted_at.is_(None),
    )


def _occurrences(partner_id: int) -> Select[Any]:
    return select(tables.Enrolment.occurrence_id).where(
        tables.Enrolment.client_id.in_(_partner_clients(partner_id)),
        tables.Enrolment.deleted_at.is_(None),
    )


def _programmes(partner_id: int) -> Select[Any]:
    return select(tables.Occurrence.programme_id).where(
        tables.Occurrence.id.in_(_occurrences(partner_id))
    )


def _units(partner_id: int) -> Any:
    return union(
        select(tables.OccurrenceUnit.unit_id).where(
            tables.OccurrenceUnit.occurrence_id.in_(_occurrences(partner_id))
        ),
        select(tables.ProgrammeUnit.unit_id).where(
            tables.ProgrammeUnit.programme_id.in_(_programmes(partner_id))
        ),
        select(tables.EnrolledUnit.unit_id).where(
            tables.EnrolledUnit.enrolment_id.in_(_enrolments(partner_id))
        ),
    )


# For each table, the condition on an entity (the mapped class or an alias of it) that keeps
# the rows a partner may read.
_PARTNER_RULES: dict[type[Any], Callable[[Any, int], Condition]] = {
    tables.Partner: lambda row, partner: row.id == partner,
    tables.Client: lambda row, partner: row.partner_id == partner,
    tables.Enrolment: lambda row, partner: row.id.in_(_enrolments(partner)),
    tables.EnrolledUnit: lambda row, partner: row.enrolment_id.in_(_enrolments(partner)),
    tables.EnrolmentLink: lambda row, partner: (
        row.administrative_enrolment_id.in_(_enrolments(partner))
        & row.session_enrolment_id.in_(_enrolments(partner))
    ),
    tables.Attendance: lambda row, partner: row.enrolment_id.in_(_enrolments(partner)),
    tables.Payment: lambda row, partner: row.enrolment_id.in_(_enrolments(partner)),
    tables.Charge: lambda row, partner: row.enrolment_id.in_(_enrolments(partner)),
    tables.Occurrence: lambda row, partner: row.id.in_(_occurrences(partner)),
    tables.Class: lambda row, partner: row.occurrence_id.in_(_occurrences(partner)),
    tables.Programme: lambda row, partner: row.id.in_(_programmes(partner)),
    tables.Unit: lambda row, partner: row.id.in_(_units(partner)),
    # Reference data that gives attendance its meaning (PRESENT, ABSENT, SICK); it names no one.
    tables.AttendanceType: lambda row, partner: true(),
    tables.ReconciliationRun: lambda row, partner: false(),
    tables.ReconciliationCount: lambda row, partner: false(),
}


def visible(entity: Any, caller: Caller) -> Condition | None:
    """Return the condition that keeps the rows of ``entity`` the caller may read.

    None means no restriction (staff). ``entity`` is a mapped class or an ``aliased`` one.
    """
    if caller.role is TokenRole.STAFF:
        return None
    if caller.partner_id is None:
        # A partner caller without a partner cannot come from a valid token; show nothing.
        return false()
    model = inspect(entity).mapper.class_
    rule = _PARTNER_RULES.get(model)
    if rule is None:
        return false()
    return rule(entity, caller.partner_id)


def restrict(statement: Select[*Ts], entity: Any, caller: Caller) -> Select[*Ts]:
    """Add the caller's scope for ``entity`` to ``statement``."""
    condition = visible(entity, caller)
    return statement if condition is None else statement.where(condition)
