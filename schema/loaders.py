"""Per-request dataloaders, named ``<Thing>By<Key>Loader``.

Each loader turns the keys gathered in one tick of the event loop into one SQL statement, so a
nested query costs one statement per level, whatever the number of rows. Loaders read with
``populate_existing`` because domain operations write with set-based UPDATE statements that do
not refresh objects already in the session.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, union_all
from sqlalchemy.orm import aliased
from strawberry.dataloader import DataLoader

from models.enums import EnrolmentStatus
from models.results import of_current_units
from models.tables import (
    Attendance,
    AttendanceType,
    Base,
    Charge,
    Class,
    Client,
    EnrolledUnit,
    Enrolment,
    EnrolmentLink,
    Occurrence,
    OccurrenceUnit,
    Partner,
    Payment,
    Programme,
    ProgrammeUnit,
    ReconciliationCount,
    ReconciliationRun,
    Unit,
)
from schema.access import restrict

if TYPE_CHECKING:
    from schema.context import Context

M = TypeVar("M", bound=Base)
K = TypeVar("K", bound=Hashable)
Ts = TypeVarTuple("Ts")


def _fresh(statement: Select[*Ts]) -> Select[*Ts]:
    return statement.execution_options(populate_existing=True)


class ByIdLoader(DataLoader[int, M | None], Generic[M]):
    """Load rows of one table by primary key; a missing id gives None."""

    model: type[M]

    def __init__(self, context: Context) -> None:
        self.context = context
        super().__init__(load_fn=self._load)

    def scope(self, statement: Select[Any]) -> Select[Any]:
        """Restrict the rows to those the caller may see; others load as None, like absent ids."""
        return restrict(statement, self.model, self.context.caller)

    async def _load(self, keys: list[int]) -> list[M | None]:
        statement = self.scope(_fresh(select(self.model).where(self.model.id.in_(keys))))  # type: ignore[attr-defined]
        rows = await self.context.scalars(statement)
        by_id = {row.id: row for row in rows}
        return [by_id.get(key) for key in keys]


class UnitByIdLoader(ByIdLoader[Unit]):
    model = Unit


class ProgrammeByIdLoader(ByIdLoader[Programme]):
    model = Programme


class OccurrenceByIdLoader(ByIdLoader[Occurrence]):
    model = Occurrence


class ClientByIdLoader(ByIdLoader[Client]):
    model = Client


class PartnerByIdLoader(ByIdLoader[Partner]):
    model = Partner


class EnrolmentByIdLoader(ByIdLoader[Enrolment]):
    model = Enrolment


class ResultByIdLoader(ByIdLoader[EnrolledUnit]):
    model = EnrolledUnit


class ClassByIdLoader(ByIdLoader[Class]):
    model = Class


class AttendanceTypeByIdLoader(ByIdLoader[AttendanceType]):
    model = AttendanceType


class ReconciliationRunByIdLoader(ByIdLoader[ReconciliationRun]):
    model = ReconciliationRun


class PaymentByIdLoader(ByIdLoader[Payment]):
    model = Payment


class AttendanceByIdLoader(ByIdLoader[Attendance]):
    model = Attendance


class EnrolmentLinkByIdLoader(ByIdLoader[EnrolmentLink]):
    model = EnrolmentLink


class GroupLoader(DataLoader[int, list[Any]]):
    """Load lists of rows grouped by a parent id, in the order the statement gives."""

    def __init__(self, context: Context) -> None:
        self.context = context
        super().__init__(load_fn=self._load)

    def statement(self, keys: list[int]) -> Select[int, Any]:
        raise NotImplementedError

    def scope(self, statement: Select[int, Any]) -> Select[int, Any]:
        """Restrict the listed rows (the statement's second column) to those the caller may see."""
        return restrict(statement, statement.column_descriptions[1]["entity"], self.context.caller)

    async def _load(self, keys: list[int]) -> list[list[Any]]:
        rows = await self.context.rows(self.scope(self.statement(keys)))
        groups: dict[int, list[Any]] = defaultdict(list)
        for parent_id, item in rows:
            groups[parent_id].append(item)
        return [groups.get(key, []) for key in keys]


class UnitsByProgrammeIdLoader(GroupLoader):
    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            select(ProgrammeUnit.programme_id, Unit)
            .join(Unit, Unit.id == ProgrammeUnit.unit_id)
            .where(ProgrammeUnit.programme_id.in_(keys))
            .order_by(ProgrammeUnit.programme_id, ProgrammeUnit.position, Unit.id)
        )


class UnitsByOccurrenceIdLoader(GroupLoader):
    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            select(OccurrenceUnit.occurrence_id, Unit)
            .join(Unit, Unit.id == OccurrenceUnit.unit_id)
            .where(OccurrenceUnit.occurrence_id.in_(keys))
            .order_by(OccurrenceUnit.occurrence_id, OccurrenceUnit.position, Unit.id)
        )


class ResultsByEnrolmentIdLoader(GroupLoader):
    """One result per unit the enrolment's occurrence has now, in the occurrence's unit order."""

    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            of_current_units(select(EnrolledUnit.enrolment_id, EnrolledUnit))
            .where(EnrolledUnit.enrolment_id.in_(keys))
            .order_by(EnrolledUnit.enrolment_id, OccurrenceUnit.position, EnrolledUnit.id)
        )


class LinkedEnrolmentsByEnrolmentIdLoader(GroupLoader):
    """Enrolments actively linked to each key: sessions of an administrative one, and vice versa."""

    def statement(self, keys: list[int]) -> Select[int, Any]:
        other = aliased(Enrolment)
        sessions = select(
            EnrolmentLink.administrative_enrolment_id.label("key"),
            EnrolmentLink.session_enrolment_id.label("other_id"),
        ).where(
            EnrolmentLink.administrative_enrolment_id.in_(keys),
            EnrolmentLink.unlinked_at.is_(None),
        )
        administrative = select(
            EnrolmentLink.session_enrolment_id.label("key"),
            EnrolmentLink.administrative_enrolment_id.label("other_id"),
        ).where(EnrolmentLink.session_enrolment_id.in_(keys), EnrolmentLink.unlinked_at.is_(None))
        pairs = union_all(sessions, administrative).subquery()
        return _fresh(
            select(pairs.c.key, other)
            .join(other, other.id == pairs.c.other_id)
            .where(other.deleted_at.is_(None))
            .order_by(pairs.c.key, other.start_date, other.id)
        )


class LinksByEnrolmentIdLoader(GroupLoader):
    """Every link, active or closed, in which the enrolment takes part; newest first."""

    async def _load(self, keys: list[int]) -> list[list[Any]]:
        statement = (
            select(EnrolmentLink)
            .where(
                or_(
                    EnrolmentLink.administrative_enrolment_id.in_(keys),
                    EnrolmentLink.session_enrolment_id.in_(keys),
                )
            )
            .order_by(EnrolmentLink.linked_at.desc(), EnrolmentLink.id.desc())
        )
        links = await self.context.scalars(
            _fresh(restrict(statement, EnrolmentLink, self.context.caller))
        )
        groups: dict[int, list[Any]] = defaultdict(list)
        for link in links:
            groups[link.administrative_enrolment_id].append(link)
            groups[link.session_enrolment_id].append(link)
        return [groups.get(key, []) for key in keys]


class SharedUnitsByLinkIdLoader(GroupLoader):
    """Units both occurrences of a link carry, in the session occurrence's unit order."""

    def statement(self, keys: list[int]) -> Select[int, Any]:
        administrative = aliased(Enrolment)
        session = aliased(Enrolment)
        administrative_unit = aliased(OccurrenceUnit)
        session_unit = aliased(OccurrenceUnit)
        return _fresh(
            select(EnrolmentLink.id, Unit)
            .join(administrative, administrative.id == EnrolmentLink.administrative_enrolment_id)
            .join(session, session.id == EnrolmentLink.session_enrolment_id)
            .join(session_unit, session_unit.occurrence_id == session.occurrence_id)
            .join(
                administrative_unit,
                and_(
                    administrative_unit.occurrence_id == administrative.occurrence_id,
                    administrative_unit.unit_id == session_unit.unit_id,
                ),
            )
            .join(Unit, Unit.id == session_unit.unit_id)
            .where(EnrolmentLink.id.in_(keys))
            .order_by(EnrolmentLink.id, session_unit.position)
        )


class ClassesByOccurrenceIdLoader(GroupLoader):
    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            select(Class.occurrence_id, Class)
            .where(Class.occurrence_id.in_(keys))
            .order_by(Class.occurrence_id, Class.starts_at, Class.id)
        )


class AttendancesByEnrolmentIdLoader(GroupLoader):
    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            select(Attendance.enrolment_id, Attendance)
            .join(Class, Class.id == Attendance.class_id)
            .where(Attendance.enrolment_id.in_(keys))
            .order_by(Attendance.enrolment_id, Class.starts_at, Attendance.id)
        )


class PaymentsByEnrolmentIdLoader(GroupLoader):
    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            select(Payment.enrolment_id, Payment)
            .where(Payment.enrolment_id.in_(keys))
            .order_by(Payment.enrolment_id, Payment.paid_on, Payment.id)
        )


class ChargesByEnrolmentIdLoader(GroupLoader):
    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            select(Charge.enrolment_id, Charge)
            .where(Charge.enrolment_id.in_(keys))
            .order_by(Charge.enrolment_id, Charge.charged_on, Charge.id)
        )


class CountsByReconciliationRunIdLoader(GroupLoader):
    def statement(self, keys: list[int]) -> Select[int, Any]:
        return _fresh(
            select(ReconciliationCount.run_id, ReconciliationCount)
            .where(ReconciliationCount.run_id.in_(keys))
            .order_by(ReconciliationCount.run_id, ReconciliationCount.cause)
        )


class BalanceByEnrolmentIdLoader(DataLoader[int, Decimal]):
    """Charges minus payments per enrolment, summed in PostgreSQL as numeric (never float)."""

    def __init__(self, context: Context) -> None:
        self.context = context
        super().__init__(load_fn=self._load)

    async def _load(self, keys: list[int]) -> list[Decimal]:
        charges = select(Charge.enrolment_id.label("enrolment_id"), Charge.amount.label("amount"))
        payments = select(
            Payment.enrolment_id.label("enrolment_id"), (-Payment.amount).label("amount")
        )
        caller = self.context.caller
        movements = union_all(
            restrict(charges.where(Charge.enrolment_id.in_(keys)), Charge, caller),
            restrict(payments.where(Payment.enrolment_id.in_(keys)), Payment, caller),
        ).subquery()
        rows = await self.context.rows(
            select(movements.c.enrolment_id, func.sum(movements.c.amount)).group_by(
                movements.c.enrolment_id
            )
        )
        totals = {enrolment_id: total for enrolment_id, total in rows}
        return [totals.get(key, Decimal("0.00")) for key in keys]


@dataclass(frozen=True)
class PageKey:
    """One page of a connection under one parent: the arguments that shape the page."""

    parent_id: int
    first: int
    after: int
    status: EnrolmentStatus | None = None


@dataclass(frozen=True)
class Page(Generic[M]):
    rows: Sequence[M]
    has_next_page: bool


class PageLoader(DataLoader[PageKey, Page[Any]]):
    """Keyset pages (ordered by id) of child rows for many parents in one statement per shape."""

    model: type[Base]

    def __init__(self, context: Context) -> None:
        self.context = context
        super().__init__(load_fn=self._load)

    def parent_column(self) -> Any:
        raise NotImplementedError

    def filters(self, key: PageKey) -> list[Any]:
        return []

    def scope(self, statement: Select[*Ts]) -> Select[*Ts]:
        """Restrict the page's rows to those the caller may see, before rows are numbered."""
        return restrict(statement, self.model, self.context.caller)

    async def _load(self, keys: list[PageKey]) -> list[Page[Any]]:
        shapes: dict[tuple[int, int, EnrolmentStatus | None], list[PageKey]] = defaultdict(list)
        for key in keys:
            shapes[(key.first, key.after, key.status)].append(key)
        pages: dict[PageKey, Page[Any]] = {}
        for (first, after, _status), shape_keys in shapes.items():
            parent = self.parent_column()
            model_id = self.model.id  # type: ignore[attr-defined]
            # One row more than asked tells whether another page follows.
            position = func.row_number().over(partition_by=parent, order_by=model_id)
            inner = self.scope(
                select(self.model, position.label("position")).where(
                    parent.in_([key.parent_id for key in shape_keys]),
                    model_id > after,
                    *self.filters(shape_keys[0]),
                )
            ).subquery()
            row = aliased(self.model, inner)
            statement = _fresh(
                select(row)
                .where(inner.c.position <= first + 1)
                .order_by(inner.c[parent.key], inner.c.id)
            )
            rows = await self.context.scalars(statement) if first > 0 else []
            grouped: dict[int, list[Any]] = defaultdict(list)
            for item in rows:
                grouped[getattr(item, parent.key)].append(item)
            for key in shape_keys:
                items = grouped.get(key.parent_id, [])
                pages[key] = Page(rows=items[:first], has_next_page=len(items) > first)
        return [pages[key] for key in keys]


class EnrolmentPageByOccurrenceIdLoader(PageLoader):
    model = Enrolment

    def parent_column(self) -> Any:
        return Enrolment.occurrence_id

    def filters(self, key: PageKey) -> list[Any]:
        conditions: list[ColumnElement[bool]] = [Enrolment.deleted_at.is_(None)]
        if key.status is not None:
            conditions.append(Enrolment.status == key.status)
        return conditions


class EnrolmentPageByClientIdLoader(EnrolmentPageByOccurrenceIdLoader):
    def parent_column(self) -> Any:
        return Enrolment.client_id


L = TypeVar("L", bound=DataLoader[Any, Any])


class _PerRequest(Generic[L]):
    """A loader attribute of Loaders, created on first use.

    A mutation's payload reads few loaders, and the loaders are created again after every write,
    so creating all of them up front was wasted work.
    """

    def __init__(self, factory: Callable[[Context], L]) -> None:
        self.factory = factory

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, loaders: Loaders, owner: type | None = None) -> L:
        loader = self.factory(loaders.context)
        # Stored on the instance, which then finds it before this descriptor.
        loaders.__dict__[self.name] = loader
        return loader


class Loaders:
    """The loaders of one request; replaced after every write so no stale row is served."""

    def __init__(self, context: Context) -> None:
        self.context = context

    unit_by_id = _PerRequest(UnitByIdLoader)
    programme_by_id = _PerRequest(ProgrammeByIdLoader)
    occurrence_by_id = _PerRequest(OccurrenceByIdLoader)
    client_by_id = _PerRequest(ClientByIdLoader)
    partner_by_id = _PerRequest(PartnerByIdLoader)
    enrolment_by_id = _PerRequest(EnrolmentByIdLoader)
    result_by_id = _PerRequest(ResultByIdLoader)
    class_by_id = _PerRequest(ClassByIdLoader)
    attendance_by_id = _PerRequest(AttendanceByIdLoader)
    attendance_type_by_id = _PerRequest(AttendanceTypeByIdLoader)
    payment_by_id = _PerRequest(PaymentByIdLoader)
    enrolment_link_by_id = _PerRequest(EnrolmentLinkByIdLoader)
    reconciliation_run_by_id = _PerRequest(ReconciliationRunByIdLoader)
    units_by_programme_id = _PerRequest(UnitsByProgrammeIdLoader)
    units_by_occurrence_id = _PerRequest(UnitsByOccurrenceIdLoader)
    results_by_enrolment_id = _PerRequest(ResultsByEnrolmentIdLoader)
    linked_enrolments_by_enrolment_id = _PerRequest(LinkedEnrolmentsByEnrolmentIdLoader)
    links_by_enrolment_id = _PerRequest(LinksByEnrolmentIdLoader)
    shared_units_by_link_id = _PerRequest(SharedUnitsByLinkIdLoader)
    classes_by_occurrence_id = _PerRequest(ClassesByOccurrenceIdLoader)
    attendances_by_enrolment_id = _PerRequest(AttendancesByEnrolmentIdLoader)
    payments_by_enrolment_id = _PerRequest(PaymentsByEnrolmentIdLoader)
    charges_by_enrolment_id = _PerRequest(ChargesByEnrolmentIdLoader)
    counts_by_reconciliation_run_id = _PerRequest(CountsByReconciliationRunIdLoader)
    balance_by_enrolment_id = _PerRequest(BalanceByEnrolmentIdLoader)
    enrolment_page_by_occurrence_id = _PerRequest(EnrolmentPageByOccurrenceIdLoader)
    enrolment_page_by_client_id = _PerRequest(EnrolmentPageByClientIdLoader)
