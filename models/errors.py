"""The domain's typed errors. Each carries a code from one enum and a full-sentence message."""

from __future__ import annotations

import enum

from sqlalchemy.exc import IntegrityError


class ErrorCode(enum.StrEnum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    DUPLICATE_CODE = "DUPLICATE_CODE"
    ALREADY_ENROLLED = "ALREADY_ENROLLED"
    PROGRAMME_NAME_EQUALS_UNIT_TITLE = "PROGRAMME_NAME_EQUALS_UNIT_TITLE"
    INVALID_USI = "INVALID_USI"
    CLIENT_MISMATCH = "CLIENT_MISMATCH"
    WRONG_OCCURRENCE_KIND = "WRONG_OCCURRENCE_KIND"
    ENROLMENT_NOT_ACTIVE = "ENROLMENT_NOT_ACTIVE"
    DATES_DO_NOT_OVERLAP = "DATES_DO_NOT_OVERLAP"
    NO_SHARED_UNITS = "NO_SHARED_UNITS"
    ALREADY_LINKED = "ALREADY_LINKED"
    NO_ADMINISTRATIVE_ENROLMENT = "NO_ADMINISTRATIVE_ENROLMENT"
    AMBIGUOUS_ADMINISTRATIVE_ENROLMENT = "AMBIGUOUS_ADMINISTRATIVE_ENROLMENT"
    NOT_LINKED = "NOT_LINKED"
    RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE = "RESULTS_NOT_ALLOWED_ON_ADMINISTRATIVE"
    ATTENDANCE_NOT_ALLOWED_ON_ADMINISTRATIVE = "ATTENDANCE_NOT_ALLOWED_ON_ADMINISTRATIVE"
    PAYMENTS_NOT_ALLOWED_ON_SESSION = "PAYMENTS_NOT_ALLOWED_ON_SESSION"
    UNIT_NOT_IN_ENROLMENT = "UNIT_NOT_IN_ENROLMENT"
    DATES_OUTSIDE_ENROLMENT = "DATES_OUTSIDE_ENROLMENT"
    LINKED_SESSIONS_ACTIVE = "LINKED_SESSIONS_ACTIVE"
    UNIT_HAS_RESULTS = "UNIT_HAS_RESULTS"
    FORBIDDEN = "FORBIDDEN"


class DomainError(Exception):
    """A rule of the domain was broken; nothing the operation wrote may be kept.

    ``field`` names the input to blame (the GraphQL input field name, e.g. ``sessionEnrolmentId``)
    when one input is at fault.
    """

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class DomainErrors(Exception):
    """Several rule failures found together, such as one per entry of a bulk recording."""

    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors


# Unique indexes whose violation, when a concurrent request slipped past the Python check,
# means the same thing as that check's typed error.
CONSTRAINT_ERRORS: dict[str, tuple[ErrorCode, str, str | None]] = {
    "uq_units_code": (ErrorCode.DUPLICATE_CODE, "A unit with this code already exists.", "code"),
    "uq_programmes_code": (
        ErrorCode.DUPLICATE_CODE,
        "A programme with this code already exists.",
        "code",
    ),
    "uq_occurrences_code": (
        ErrorCode.DUPLICATE_CODE,
        "An occurrence with this code already exists.",
        "code",
    ),
    "uq_clients_client_code": (
        ErrorCode.DUPLICATE_CODE,
        "A client with this client code already exists.",
        "clientCode",
    ),
    "uq_clients_usi": (
        ErrorCode.DUPLICATE_CODE,
        "Another client already has this USI.",
        "usi",
    ),
    "uq_enrolments_live_client_occurrence": (
        ErrorCode.ALREADY_ENROLLED,
        "The client is already enrolled in this occurrence.",
        "occurrenceId",
    ),
    "uq_enrolment_links_active_session": (
        ErrorCode.ALREADY_LINKED,
        "The session enrolment is already linked to another administrative enrolment.",
        "sessionEnrolmentId",
    ),
    "uq_attendances_class_id_enrolment_id": (
        ErrorCode.INVALID_INPUT,
        "Attendance for this enrolment at this class is already recorded.",
        "enrolmentId",
    ),
}


# SQLSTATE codes of a conflict between concurrent transactions (serialization_failure,
# deadlock_detected): PostgreSQL aborts one of them, and running it again normally succeeds.
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})


def sqlstates(error: BaseException) -> list[str]:
    """Return the SQLSTATE codes found on the error and on the errors it wraps."""
    codes: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str):
            codes.append(code)
        orig = getattr(current, "orig", None)
        pending.extend([orig if isinstance(orig, BaseException) else None, current.__cause__])
    return codes


def is_transaction_conflict(error: BaseException) -> bool:
    """Return True when PostgreSQL aborted the work for a deadlock or serialisation failure."""
    return any(code in CONFLICT_SQLSTATES for code in sqlstates(error))


def domain_error_from_integrity(error: IntegrityError) -> DomainError | None:
    """Map a unique violation of a known constraint to its typed error, or return None."""
    constraint = getattr(error.orig, "constraint_name", None)
    if constraint is None:
        # asyncpg's error is wrapped by SQLAlchemy's adaptor; the original is one level down.
        cause = getattr(error.orig, "__cause__", None)
        constraint = getattr(cause, "constraint_name", None)
    mapped = CONSTRAINT_ERRORS.get(constraint or "")
    if mapped is None:
        return None
    code, message, field = mapped
    return DomainError(code, message, field=field)
