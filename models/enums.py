"""Domain enumerations shared by the tables, the domain operations and the GraphQL schema."""

from __future__ import annotations

import enum


class OccurrenceKind(enum.StrEnum):
    STANDARD = "STANDARD"
    ADMINISTRATIVE = "ADMINISTRATIVE"
    SESSION = "SESSION"


class EnrolmentStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    WITHDRAWN = "WITHDRAWN"
    CANCELLED = "CANCELLED"


class ResultSource(enum.StrEnum):
    RECORDED = "RECORDED"
    ROLLED_UP = "ROLLED_UP"


class AttendanceCounting(enum.StrEnum):
    POSITIVE = "POSITIVE"
    NEUTRAL = "NEUTRAL"
    NEGATIVE = "NEGATIVE"


class TokenRole(enum.StrEnum):
    STAFF = "STAFF"
    PARTNER = "PARTNER"


class Outcome(enum.IntEnum):
    """AVETMISS national outcome identifiers; the value is the number stored and reported."""

    COMPETENCY_ACHIEVED = 20
    COMPETENCY_NOT_ACHIEVED = 30
    WITHDRAWN = 40
    INCOMPLETE_RTO_CLOSURE = 41
    RPL_GRANTED = 51
    RPL_NOT_GRANTED = 52
    RCC_GRANTED = 53
    RCC_NOT_GRANTED = 54
    CREDIT_TRANSFER = 60
    SUPERSEDED_SUBJECT = 61
    CONTINUING = 70
    NON_ASSESSABLE_COMPLETED = 81
    NON_ASSESSABLE_NOT_COMPLETED = 82
    NOT_YET_STARTED = 85

    @property
    def is_final(self) -> bool:
        return self not in NON_FINAL_OUTCOMES


# Continuing (70) and not yet started (85) mean the unit is still open; all others are final.
NON_FINAL_OUTCOMES = frozenset({Outcome.CONTINUING, Outcome.NOT_YET_STARTED})

# The AVETMISS name of each outcome identifier (NAT00120 "Outcome identifier - national").
OUTCOME_NAMES: dict[Outcome, str] = {
    Outcome.COMPETENCY_ACHIEVED: "Competency achieved/pass",
    Outcome.COMPETENCY_NOT_ACHIEVED: "Competency not achieved/fail",
    Outcome.WITHDRAWN: "Withdrawn/discontinued",
    Outcome.INCOMPLETE_RTO_CLOSURE: "Incomplete due to RTO closure",
    Outcome.RPL_GRANTED: "Recognition of prior learning granted",
    Outcome.RPL_NOT_GRANTED: "Recognition of prior learning not granted",
    Outcome.RCC_GRANTED: "Recognition of current competency granted",
    Outcome.RCC_NOT_GRANTED: "Recognition of current competency not granted",
    Outcome.CREDIT_TRANSFER: "Credit transfer/national recognition",
    Outcome.SUPERSEDED_SUBJECT: "Superseded subject",
    Outcome.CONTINUING: "Continuing enrolment",
    Outcome.NON_ASSESSABLE_COMPLETED: "Non-assessable enrolment, satisfactorily completed",
    Outcome.NON_ASSESSABLE_NOT_COMPLETED: (
        "Non-assessable enrolment, withdrawn or not satisfactorily completed"
    ),
    Outcome.NOT_YET_STARTED: "Not yet started",
}


def describe_outcome(outcome: Outcome) -> str:
    """Return the outcome's AVETMISS name, code and whether it is final, for the API's docs."""
    finality = "Final." if outcome.is_final else "Not final, because the unit is still open."
    return f"{OUTCOME_NAMES[outcome]}, AVETMISS outcome {outcome.value}. {finality}"


OUTCOME_CODES = tuple(outcome.value for outcome in Outcome)
NON_FINAL_OUTCOME_CODES = tuple(outcome.value for outcome in NON_FINAL_OUTCOMES)
