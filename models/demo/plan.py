"""The fixed plan of the demo data: a 2026 cohort of BSB50420 Diploma of Leadership and Management.

Every person and organisation here is invented. Emails use example.com, a domain reserved for
documentation (RFC 2606). The year is fixed so that a fresh database seeded twice gives the same
rows, ids and GraphQL responses.

The data show the cohort as at early September 2026: sessions 1 to 4 and a catch-up assessment
are finished, session 5 is under way (outcome 70, continuing) and session 6 has not started
(outcome 85, not yet started).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from models.enums import Outcome
from models.validation import USI_ALPHABET, usi_check_character

QUALIFICATION_CODE = "BSB50420"
QUALIFICATION_NAME = "Diploma of Leadership and Management"

# The administrative occurrence's code marks the demo data: `enrolink seed` loads nothing when
# an occurrence with this code exists.
ADMINISTRATIVE_CODE = "LDM26-ADM"
ADMINISTRATIVE_NAME = "Diploma of Leadership and Management, 2026 cohort"
YEAR_START = date(2026, 2, 2)
YEAR_END = date(2026, 11, 27)
FEE = Decimal("4950.00")
LOCATION = "Parramatta training centre"

PARTNER_CODE = "BELLBIRD"
PARTNER_NAME = "Bellbird Freight Pty Ltd"

# Name stored as the recorder of the demo's results, attendance and payments.
RECORDED_BY = "enrolink seed"

# Nominal hours are invented for the demo; a real delivery takes them from its training plan.
NOMINAL_HOURS = {
    "BSBCMM511": 40,
    "BSBCRT511": 40,
    "BSBLDR523": 50,
    "BSBOPS502": 60,
    "BSBPEF502": 40,
    "BSBTWK502": 50,
    "BSBOPS503": 40,
    "BSBWHS521": 50,
    "BSBOPS501": 60,
    "BSBOPS504": 50,
    "BSBLDR522": 50,
    "BSBSTR502": 40,
}


@dataclass(frozen=True)
class SessionPlan:
    """A session programme and its one occurrence in 2026.

    ``outcomes`` gives each unit's outcome by client number where it is not ``default_outcome``;
    a client number missing from ``enrolled`` (None: every client) is not enrolled.
    """

    programme_code: str
    programme_name: str
    occurrence_code: str
    unit_codes: tuple[str, ...]
    start: date
    end: date
    default_outcome: Outcome | None
    outcomes: dict[str, dict[int, Outcome]] = field(default_factory=dict)
    enrolled: tuple[int, ...] | None = None
    # Classes are held on these days after the start, 09:00 to 16:00 in Sydney.
    class_days: tuple[int, ...] = (0, 14)
    # Attendance is taken at classes on or before this date; None: at every class.
    attendance_until: date | None = None


# Six consecutive sessions of two units each, and a two-week catch-up assessment of
# BSBCMM511 for the clients who did not achieve it in session 1. Each programme is named after
# what it delivers and never after one of its units' titles, as the domain requires.
SESSIONS: tuple[SessionPlan, ...] = (
    SessionPlan(
        programme_code="LDM-S1",
        programme_name="Session 1: Influence and critical thinking",
        occurrence_code="LDM26-S1",
        unit_codes=("BSBCMM511", "BSBCRT511"),
        start=date(2026, 2, 2),
        end=date(2026, 3, 20),
        default_outcome=Outcome.COMPETENCY_ACHIEVED,
        outcomes={
            "BSBCMM511": {
                5: Outcome.COMPETENCY_NOT_ACHIEVED,
                8: Outcome.COMPETENCY_NOT_ACHIEVED,
                11: Outcome.COMPETENCY_NOT_ACHIEVED,
            }
        },
    ),
    SessionPlan(
        programme_code="LDM-S2",
        programme_name="Session 2: Relationships and emotional intelligence",
        occurrence_code="LDM26-S2",
        unit_codes=("BSBLDR523", "BSBPEF502"),
        start=date(2026, 3, 23),
        end=date(2026, 5, 8),
        default_outcome=Outcome.COMPETENCY_ACHIEVED,
        outcomes={
            "BSBLDR523": {20: Outcome.COMPETENCY_NOT_ACHIEVED},
            "BSBPEF502": {3: Outcome.RPL_GRANTED},
        },
    ),
    SessionPlan(
        programme_code="LDM-S3",
        programme_name="Session 3: Teams and people performance",
        occurrence_code="LDM26-S3",
        unit_codes=("BSBTWK502", "BSBLDR522"),
        start=date(2026, 5, 11),
        end=date(2026, 6, 26),
        default_outcome=Outcome.COMPETENCY_ACHIEVED,
        outcomes={"BSBLDR522": {22: Outcome.COMPETENCY_NOT_ACHIEVED}},
    ),
    SessionPlan(
        programme_code="LDM-S4",
        programme_name="Session 4: Operational planning and resources",
        occurrence_code="LDM26-S4",
        unit_codes=("BSBOPS502", "BSBOPS501"),
        start=date(2026, 6, 29),
        end=date(2026, 8, 14),
        default_outcome=Outcome.COMPETENCY_ACHIEVED,
        outcomes={
            "BSBOPS502": {13: Outcome.COMPETENCY_NOT_ACHIEVED},
            "BSBOPS501": {9: Outcome.CREDIT_TRANSFER},
        },
    ),
    SessionPlan(
        programme_code="LDM-CU1",
        programme_name="Catch-up assessment: communicating with influence",
        occurrence_code="LDM26-CU1",
        unit_codes=("BSBCMM511",),
        start=date(2026, 7, 20),
        end=date(2026, 7, 31),
        default_outcome=Outcome.COMPETENCY_ACHIEVED,
        # Client 8 did not achieve BSBCMM511 either; the walkthrough enrols them here.
        enrolled=(5, 11),
        class_days=(0, 7),
    ),
    SessionPlan(
        programme_code="LDM-S5",
        programme_name="Session 5: Workplace safety and business risk",
        occurrence_code="LDM26-S5",
        unit_codes=("BSBWHS521", "BSBOPS504"),
        start=date(2026, 8, 17),
        end=date(2026, 10, 2),
        default_outcome=Outcome.CONTINUING,
        attendance_until=date(2026, 9, 4),
    ),
    SessionPlan(
        programme_code="LDM-S6",
        programme_name="Session 6: Administrative systems and continuous improvement",
        occurrence_code="LDM26-S6",
        unit_codes=("BSBOPS503", "BSBSTR502"),
        start=date(2026, 10, 5),
        end=date(2026, 11, 27),
        default_outcome=Outcome.NOT_YET_STARTED,
        attendance_until=date(2026, 9, 4),
    ),
)


@dataclass(frozen=True)
class ClientPlan:
    number: int
    given_name: str
    surname: str
    date_of_birth: date
    employed_by_partner: bool = False

    @property
    def client_code(self) -> str:
        return f"LDM26{self.number:02d}"

    @property
    def email(self) -> str:
        return f"{self.given_name.lower()}.{self.surname.lower()}@example.com"

    @property
    def usi(self) -> str:
        """Return an invented USI: ``LDMVK``, four characters from the client number, a check."""
        digits = ""
        value = self.number * 7919
        for _ in range(4):
            value, remainder = divmod(value, len(USI_ALPHABET))
            digits = USI_ALPHABET[remainder] + digits
        body = f"LDMVK{digits}"
        return body + usi_check_character(body)


CLIENTS: tuple[ClientPlan, ...] = (
    ClientPlan(1, "Amelia", "Hartigan", date(1988, 4, 12), employed_by_partner=True),
    ClientPlan(2, "Jack", "Okonkwo", date(1991, 9, 3), employed_by_partner=True),
    ClientPlan(3, "Priya", "Raman", date(1985, 1, 27), employed_by_partner=True),
    ClientPlan(4, "Liam", "Castellano", date(1993, 6, 18), employed_by_partner=True),
    ClientPlan(5, "Grace", "Nakamura", date(1987, 11, 5), employed_by_partner=True),
    ClientPlan(6, "Noah", "Fitzgerald", date(1990, 2, 14), employed_by_partner=True),
    ClientPlan(7, "Mia", "Papadopoulos", date(1992, 8, 30)),
    ClientPlan(8, "Ethan", "Walsh", date(1984, 12, 9)),
    ClientPlan(9, "Chloe", "Abernethy", date(1995, 3, 21)),
    ClientPlan(10, "Lucas", "Tran", date(1989, 7, 11)),
    ClientPlan(11, "Zoe", "Mahmoud", date(1986, 10, 2)),
    ClientPlan(12, "Oliver", "Brennan", date(1994, 5, 16)),
    ClientPlan(13, "Isla", "Kowalski", date(1983, 9, 25)),
    ClientPlan(14, "Harry", "Ngata", date(1990, 12, 3)),
    ClientPlan(15, "Ruby", "Delacroix", date(1992, 4, 8)),
    ClientPlan(16, "Samuel", "Adeyemi", date(1987, 2, 19)),
    ClientPlan(17, "Lily", "Henderson", date(1996, 7, 7)),
    ClientPlan(18, "Thomas", "Sorensen", date(1985, 6, 23)),
    ClientPlan(19, "Ava", "Lindqvist", date(1991, 11, 14)),
    ClientPlan(20, "William", "Chowdhury", date(1988, 8, 1)),
    ClientPlan(21, "Ella", "Marchetti", date(1993, 1, 30)),
    ClientPlan(22, "James", "Whitlock", date(1986, 3, 12)),
    ClientPlan(23, "Sophie", "Iwasaki", date(1990, 10, 20)),
    ClientPlan(24, "Mason", "Kealy", date(1994, 12, 6)),
)


@dataclass(frozen=True)
class WithdrawalPlan:
    """A client who leaves part way through session 3; their units there were continuing."""

    client_number: int
    withdrawn_on: date
    # Results recorded before the withdrawal: outcome 70 from this start date.
    continuing_in: str
    continuing_from: date


WITHDRAWAL = WithdrawalPlan(
    client_number=17,
    withdrawn_on=date(2026, 5, 29),
    continuing_in="LDM26-S3",
    continuing_from=date(2026, 5, 11),
)


@dataclass(frozen=True)
class PaymentPlan:
    amount: Decimal
    paid_on: date
    method: str
    reference: str


def payments_for(client: ClientPlan) -> tuple[PaymentPlan, ...]:
    """Return a client's payments towards the fee of 4,950.00.

    The partner pays the whole fee for its staff on one invoice. The others pay in three
    instalments of 1,650.00: every fourth of them has paid only the first two so far, and the
    client who withdrew paid only the first.
    """
    if client.employed_by_partner:
        return (PaymentPlan(FEE, date(2026, 2, 2), "EFT", "BELLBIRD-INV-2026-014"),)
    instalment = FEE / 3
    due = (date(2026, 2, 2), date(2026, 5, 4), date(2026, 8, 3))
    if client.number == WITHDRAWAL.client_number:
        count = 1
    elif client.number % 4 == 0:
        count = 2
    else:
        count = 3
    return tuple(
        PaymentPlan(instalment, paid_on, "card", f"RCPT-{client.client_code}-{index}")
        for index, paid_on in enumerate(due[:count], start=1)
    )


# Sydney's UTC offset in 2026: daylight saving (AEDT, +11:00) ends on 5 April and starts again
# on 4 October; in between it is AEST, +10:00. Classes run in daytime, away from the changeovers.
_AEDT = timezone(timedelta(hours=11))
_AEST = timezone(timedelta(hours=10))
CLASS_STARTS = time(9, 0)
CLASS_ENDS = time(16, 0)


def sydney_offset(day: date) -> timezone:
    if date(2026, 4, 5) <= day < date(2026, 10, 4):
        return _AEST
    return _AEDT


def class_times(day: date) -> tuple[datetime, datetime]:
    """Return the start and end of a class on ``day``, with Sydney's UTC offset of that day."""
    offset = sydney_offset(day)
    return (
        datetime.combine(day, CLASS_STARTS, tzinfo=offset),
        datetime.combine(day, CLASS_ENDS, tzinfo=offset),
    )


def attendance_type_for(client_number: int, class_number: int) -> str:
    """Return PRESENT, ABSENT or SICK: a fixed pattern with about one absence in eleven."""
    turn = (client_number * 7 + class_number * 3) % 23
    if turn == 0:
        return "SICK"
    if turn in (5, 17):
        return "ABSENT"
    return "PRESENT"
