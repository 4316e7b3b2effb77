"""The read model: GraphQL object types resolved from the ORM rows.

Scalar fields resolve by plain attribute access on the row (no resolver call per field), and
every relation goes through a per-request dataloader, so one level of a query is one statement.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry import Parent
from strawberry.types import Info
from strawberry.types.enum import has_enum_definition

from models import tables
from models.enums import (
    AttendanceCounting as AttendanceCountingEnum,
)
from models.enums import (
    EnrolmentStatus as EnrolmentStatusEnum,
)
from models.enums import (
    OccurrenceKind as OccurrenceKindEnum,
)
from models.enums import (
    Outcome as OutcomeEnum,
)
from models.enums import (
    ResultSource as ResultSourceEnum,
)
from models.enums import describe_outcome
from schema.context import Context
from schema.ids import decode_cursor, encode_cursor, encode_id
from schema.loaders import Page, PageKey

OccurrenceKind = strawberry.enum(OccurrenceKindEnum, name="OccurrenceKind")
EnrolmentStatus = strawberry.enum(EnrolmentStatusEnum, name="EnrolmentStatus")
Outcome = strawberry.enum(
    OutcomeEnum,
    name="Outcome",
    description="AVETMISS outcome; `outcomeCode` on Result gives the national number. Inputs "
    "take the name, e.g. COMPETENCY_ACHIEVED for 20.",
)
# strawberry.enum (0.341) takes no per-value descriptions for an enum defined outside the schema,
# so each value of the definition it built gets its AVETMISS name and code here.
assert has_enum_definition(Outcome)
for _value in Outcome.__strawberry_definition__.values:
    _value.description = describe_outcome(OutcomeEnum[_value.name])
ResultSource = strawberry.enum(ResultSourceEnum, name="ResultSource")
AttendanceCounting = strawberry.enum(AttendanceCountingEnum, name="AttendanceCounting")

InfoT = Info[Context, None]


def _global_id(type_name: str) -> Any:
    """Build the ``id`` field of a Node type: the opaque global id of the row's primary key."""

    def resolve(root: Parent[Any]) -> strawberry.ID:
        return strawberry.ID(encode_id(type_name, root.id))

    return strawberry.field(resolver=resolve, description="Opaque global id.")


def _is_row(model: type[Any]) -> Any:
    def is_type_of(obj: Any, _info: Any) -> bool:
        return isinstance(obj, model)

    return classmethod(lambda cls, obj, info: is_type_of(obj, info))


@strawberry.interface(description="An object with a global id, fetchable with `node(id:)`.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def _connection_parts(page: Page[Any]) -> tuple[list[Any], PageInfo]:
    edges = [(encode_cursor(row.id), row) for row in page.rows]
    return edges, PageInfo(
        has_next_page=page.has_next_page, end_cursor=edges[-1][0] if edges else None
    )


@strawberry.type
class Unit(Node):
    id: strawberry.ID = _global_id("Unit")
    code: str
    title: str
    nominal_hours: int | None
    is_type_of = _is_row(tables.Unit)


@strawberry.type
class Partner(Node):
    id: strawberry.ID = _global_id("Partner")
    code: str
    name: str
    is_type_of = _is_row(tables.Partner)


@strawberry.type
class Programme(Node):
    id: strawberry.ID = _global_id("Programme")
    code: str
    name: str
    is_type_of = _is_row(tables.Programme)

    @strawberry.field
    async def units(self, root: Parent[tables.Programme], info: InfoT) -> list[Unit]:
        return await info.context.loaders.units_by_programme_id.load(root.id)


@strawberry.type
class EnrolmentEdge:
    cursor: str
    node: Enrolment


@strawberry.type
class EnrolmentConnection:
    edges: list[EnrolmentEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[Any]) -> EnrolmentConnection:
        edges, page_info = _connection_parts(page)
        return cls(
            edges=[EnrolmentEdge(cursor=cursor, node=row) for cursor, row in edges],
            page_info=page_info,
        )


@strawberry.type
class Occurrence(Node):
    id: strawberry.ID = _global_id("Occurrence")
    code: str
    name: str
    kind: OccurrenceKind  # type: ignore[valid-type]
    start_date: date
    end_date: date
    location: str | None
    fee: Decimal | None
    is_type_of = _is_row(tables.Occurrence)

    @strawberry.field
    async def programme(self, root: Parent[tables.Occurrence], info: InfoT) -> Programme:
        return await info.context.loaders.programme_by_id.load(root.programme_id)  # type: ignore[return-value]

    @strawberry.field
    async def units(self, root: Parent[tables.Occurrence], info: InfoT) -> list[Unit]:
        return await info.context.loaders.units_by_occurrence_id.load(root.id)

    @strawberry.field
    async def classes(self, root: Parent[tables.Occurrence], info: InfoT) -> list[Class]:
        return await info.context.loaders.classes_by_occurrence_id.load(root.id)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Enrolments not deleted, oldest first."
    )
    async def enrolments(
        self,
        root: Parent[tables.Occurrence],
        info: InfoT,
        first: int | None = None,
        after: str | None = None,
        status: EnrolmentStatus | None = None,  # type: ignore[valid-type]
    ) -> EnrolmentConnection:
        context = info.context
        key = PageKey(root.id, context.page_size(first), decode_cursor(after), status)
        page = await context.loaders.enrolment_page_by_occurrence_id.load(key)
        return EnrolmentConnection.from_page(page)


@strawberry.type
class Client(Node):
    id: strawberry.ID = _global_id("Client")
    client_code: str
    given_name: str | None
    surname: str
    date_of_birth: date | None
    email: str | None
    usi: str | None
    is_type_of = _is_row(tables.Client)

    @strawberry.field
    async def partner(self, root: Parent[tables.Client], info: InfoT) -> Partner | None:
        if root.partner_id is None:
            return None
        return await info.context.loaders.partner_by_id.load(root.partner_id)  # type: ignore[return-value]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Enrolments not deleted, oldest first."
    )
    async def enrolments(
        self,
        root: Parent[tables.Client],
        info: InfoT,
        first: int | None = None,
        after: str | None = None,
    ) -> EnrolmentConnection:
        context = info.context
        key = PageKey(root.id, context.page_size(first), decode_cursor(after))
        page = await context.loaders.enrolment_page_by_client_id.load(key)
        return EnrolmentConnection.from_page(page)


@strawberry.type
class RollUpState:
    pending: bool = strawberry.field(
        description="True while a change to the linked session results has not been rolled up."
    )
    last_computed_at: datetime | None


@strawberry.type
class Enrolment(Node):
    id: strawberry.ID = _global_id("Enrolment")
    status: EnrolmentStatus  # type: ignore[valid-type]
    start_date: date
    end_date: date
    withdrawn_on: date | None
    deleted_at: datetime | None
    created_at: datetime
    is_type_of = _is_row(tables.Enrolment)

    @strawberry.field
    async def client(self, root: Parent[tables.Enrolment], info: InfoT) -> Client:
        return await info.context.loaders.client_by_id.load(root.client_id)  # type: ignore[return-value]

    @strawberry.field
    async def occurrence(self, root: Parent[tables.Enrolment], info: InfoT) -> Occurrence:
        return await info.context.loaders.occurrence_by_id.load(root.occurrence_id)  # type: ignore[return-value]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Administrative enrolment: its actively linked session enrolments. "
        "Session enrolment: the administrative enrolment it is linked to."
    )
    async def linked_enrolments(
        self, root: Parent[tables.Enrolment], info: InfoT
    ) -> list[Enrolment]:
        return await info.context.loaders.linked_enrolments_by_enrolment_id.load(root.id)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Session side only: the administrative enrolment it is linked to."
    )
    async def administrative_enrolment(
        self, root: Parent[tables.Enrolment], info: InfoT
    ) -> Enrolment | None:
        occurrence = await info.context.loaders.occurrence_by_id.load(root.occurrence_id)
        if occurrence is None or occurrence.kind is not OccurrenceKindEnum.SESSION:
            return None
        linked = await info.context.loaders.linked_enrolments_by_enrolment_id.load(root.id)
        return linked[0] if linked else None

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Every link this enrolment takes part in, closed ones included."
    )
    async def links(self, root: Parent[tables.Enrolment], info: InfoT) -> list[EnrolmentLink]:
        return await info.context.loaders.links_by_enrolment_id.load(root.id)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="One result per unit of the occurrence, in the occurrence's order."
    )
    async def results(self, root: Parent[tables.Enrolment], info: InfoT) -> list[Result]:
        return await info.context.loaders.results_by_enrolment_id.load(root.id)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Administrative side only: the state of the roll-up."
    )
    async def roll_up(self, root: Parent[tables.Enrolment], info: InfoT) -> RollUpState | None:
        occurrence = await info.context.loaders.occurrence_by_id.load(root.occurrence_id)
        if occurrence is None or occurrence.kind is not OccurrenceKindEnum.ADMINISTRATIVE:
            return None
        return RollUpState(
            pending=root.roll_up_version != root.roll_up_computed_version,
            last_computed_at=root.roll_up_computed_at,
        )

    @strawberry.field
    async def attendances(self, root: Parent[tables.Enrolment], info: InfoT) -> list[Attendance]:
        return await info.context.loaders.attendances_by_enrolment_id.load(root.id)

    @strawberry.field
    async def payments(self, root: Parent[tables.Enrolment], info: InfoT) -> list[Payment]:
        return await info.context.loaders.payments_by_enrolment_id.load(root.id)

    @strawberry.field
    async def charges(self, root: Parent[tables.Enrolment], info: InfoT) -> list[Charge]:
        return await info.context.loaders.charges_by_enrolment_id.load(root.id)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Charges minus payments in AUD; null on session enrolments (no money there)."
    )
    async def balance(self, root: Parent[tables.Enrolment], info: InfoT) -> Decimal | None:
        occurrence = await info.context.loaders.occurrence_by_id.load(root.occurrence_id)
        if occurrence is None or occurrence.kind is OccurrenceKindEnum.SESSION:
            return None
        return await info.context.loaders.balance_by_enrolment_id.load(root.id)


@strawberry.type
class Result(Node):
    id: strawberry.ID = _global_id("Result")
    source: ResultSource  # type: ignore[valid-type]
    start_date: date | None
    end_date: date | None
    recorded_at: datetime | None
    recorded_by: str | None
    is_type_of = _is_row(tables.EnrolledUnit)

    @strawberry.field
    def outcome(self, root: Parent[tables.EnrolledUnit]) -> Outcome | None:  # type: ignore[valid-type]
        return None if root.outcome is None else OutcomeEnum(root.outcome)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="The AVETMISS outcome number, e.g. 20 for competency achieved."
    )
    def outcome_code(self, root: Parent[tables.EnrolledUnit]) -> int | None:
        return root.outcome

    @strawberry.field
    async def unit(self, root: Parent[tables.EnrolledUnit], info: InfoT) -> Unit:
        return await info.context.loaders.unit_by_id.load(root.unit_id)  # type: ignore[return-value]

    @strawberry.field
    async def enrolment(self, root: Parent[tables.EnrolledUnit], info: InfoT) -> Enrolment:
        return await info.context.loaders.enrolment_by_id.load(root.enrolment_id)  # type: ignore[return-value]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Rolled-up results: the session result it came from."
    )
    async def source_result(self, root: Parent[tables.EnrolledUnit], info: InfoT) -> Result | None:
        if root.source_enrolled_unit_id is None:
            return None
        return await info.context.loaders.result_by_id.load(root.source_enrolled_unit_id)  # type: ignore[return-value]


@strawberry.type
class EnrolmentLink(Node):
    id: strawberry.ID = _global_id("EnrolmentLink")
    linked_at: datetime
    unlinked_at: datetime | None
    unlink_reason: str | None
    is_type_of = _is_row(tables.EnrolmentLink)

    @strawberry.field
    async def administrative_enrolment(
        self, root: Parent[tables.EnrolmentLink], info: InfoT
    ) -> Enrolment:
        return await info.context.loaders.enrolment_by_id.load(root.administrative_enrolment_id)  # type: ignore[return-value]

    @strawberry.field
    async def session_enrolment(self, root: Parent[tables.EnrolmentLink], info: InfoT) -> Enrolment:
        return await info.context.loaders.enrolment_by_id.load(root.session_enrolment_id)  # type: ignore[return-value]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Units both occurrences carry."
    )
    async def shared_units(self, root: Parent[tables.EnrolmentLink], info: InfoT) -> list[Unit]:
        return await info.context.loaders.shared_units_by_link_id.load(root.id)


@strawberry.type
class Class(Node):
    id: strawberry.ID = _global_id("Class")
    starts_at: datetime
    ends_at: datetime
    location: str | None
    is_type_of = _is_row(tables.Class)

    @strawberry.field
    async def occurrence(self, root: Parent[tables.Class], info: InfoT) -> Occurrence:
        return await info.context.loaders.occurrence_by_id.load(root.occurrence_id)  # type: ignore[return-value]


@strawberry.type
class AttendanceType:
    code: str
    name: str
    counting: AttendanceCounting  # type: ignore[valid-type]


_SIGN = {
    AttendanceCountingEnum.POSITIVE: 1,
    AttendanceCountingEnum.NEUTRAL: 0,
    AttendanceCountingEnum.NEGATIVE: -1,
}


@strawberry.type
class Attendance(Node):
    id: strawberry.ID = _global_id("Attendance")
    notes: str | None
    recorded_at: datetime
    is_type_of = _is_row(tables.Attendance)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        name="class"
    )
    async def class_(self, root: Parent[tables.Attendance], info: InfoT) -> Class:
        return await info.context.loaders.class_by_id.load(root.class_id)  # type: ignore[return-value]

    @strawberry.field
    async def enrolment(self, root: Parent[tables.Attendance], info: InfoT) -> Enrolment:
        return await info.context.loaders.enrolment_by_id.load(root.enrolment_id)  # type: ignore[return-value]

    @strawberry.field
    async def attendance_type(self, root: Parent[tables.Attendance], info: InfoT) -> AttendanceType:
        return await info.context.loaders.attendance_type_by_id.load(root.attendance_type_id)  # type: ignore[return-value]

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="Class duration in hours times the type's sign (+1, 0 or -1)."
    )
    async def hours(self, root: Parent[tables.Attendance], info: InfoT) -> Decimal:
        class_ = await info.context.loaders.class_by_id.load(root.class_id)
        kind = await info.context.loaders.attendance_type_by_id.load(root.attendance_type_id)
        assert class_ is not None and kind is not None
        seconds = Decimal((class_.ends_at - class_.starts_at).total_seconds())
        return (seconds / Decimal(3600) * _SIGN[kind.counting]).quantize(Decimal("0.01"))


@strawberry.type
class Payment(Node):
    id: strawberry.ID = _global_id("Payment")
    amount: Decimal
    paid_on: date
    method: str | None
    reference: str | None
    is_type_of = _is_row(tables.Payment)

    @strawberry.field
    async def enrolment(self, root: Parent[tables.Payment], info: InfoT) -> Enrolment:
        return await info.context.loaders.enrolment_by_id.load(root.enrolment_id)  # type: ignore[return-value]


@strawberry.type
class Charge:
    amount: Decimal
    description: str
    charged_on: date


@strawberry.type
class ReconciliationCount:
    cause: str
    found: int
    repaired: int


@strawberry.type
class ReconciliationRun(Node):
    id: strawberry.ID = _global_id("ReconciliationRun")
    started_at: datetime
    finished_at: datetime | None
    trigger: str
    is_type_of = _is_row(tables.ReconciliationRun)

    @strawberry.field(  # type: ignore[untyped-decorator]  # field(...) without a resolver returns Any
        description="One count per cause: how many were found and repaired."
    )
    async def counts(
        self, root: Parent[tables.ReconciliationRun], info: InfoT
    ) -> list[ReconciliationCount]:
        return await info.context.loaders.counts_by_reconciliation_run_id.load(root.id)


# Each Node type by the type name inside its global ids, for `node(id:)`.
NODE_LOADERS: dict[str, str] = {
    "Unit": "unit_by_id",
    "Partner": "partner_by_id",
    "Programme": "programme_by_id",
    "Occurrence": "occurrence_by_id",
    "Client": "client_by_id",
    "Enrolment": "enrolment_by_id",
    "Result": "result_by_id",
    "EnrolmentLink": "enrolment_link_by_id",
    "Class": "class_by_id",
    "Attendance": "attendance_by_id",
    "Payment": "payment_by_id",
    "ReconciliationRun": "reconciliation_run_by_id",
}
