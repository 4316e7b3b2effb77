"""A pure-Python reference of the roll-up rule and of which links the reconciler closes.

It is written from the rule as the training organisation states it, not from the SQL in
``models.roll_up``, so that the two can disagree:

- candidates for unit U of an administrative enrolment are the results for U, with an outcome,
  of its actively linked session enrolments that are neither deleted nor cancelled;
- a final outcome outranks a non-final one (70 continuing and 85 not yet started are the
  non-final ones), then the most recently recorded wins, then the higher id;
- the rolled-up start is the earliest start among the candidates, the end the chosen one's;
- units the administrative occurrence lacks are ignored, and with no candidate the unit stays
  unrecorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

NON_FINAL_OUTCOMES = frozenset({70, 85})


@dataclass(frozen=True)
class StoredResult:
    """One enrolled-unit row as read from the database."""

    id: int
    enrolment_id: int
    unit_id: int
    outcome: int | None
    start_date: date | None
    end_date: date | None
    recorded_at: datetime | None
    source_enrolled_unit_id: int | None = None


@dataclass(frozen=True)
class RolledUp:
    """What the rule gives one unit of an administrative enrolment; all None when unrecorded."""

    outcome: int | None = None
    start_date: date | None = None
    end_date: date | None = None
    source_id: int | None = None
    recorded_at: datetime | None = None


UNRECORDED = RolledUp()


def _rank(result: StoredResult) -> tuple[bool, datetime, int]:
    assert result.recorded_at is not None, f"result {result.id} has an outcome but no time"
    return (result.outcome not in NON_FINAL_OUTCOMES, result.recorded_at, result.id)


def roll_up_unit(candidates: Iterable[StoredResult]) -> RolledUp:
    """Apply the rule to the session results of one unit (the caller filters the enrolments)."""
    with_outcome = [result for result in candidates if result.outcome is not None]
    if not with_outcome:
        return UNRECORDED
    chosen = max(with_outcome, key=_rank)
    starts = [result.start_date for result in with_outcome if result.start_date is not None]
    return RolledUp(
        outcome=chosen.outcome,
        start_date=min(starts) if starts else None,
        end_date=chosen.end_date,
        source_id=chosen.id,
        recorded_at=chosen.recorded_at,
    )


@dataclass
class ModelOccurrence:
    id: int
    gid: str
    kind: str
    start_date: date
    end_date: date
    units: set[int]


@dataclass
class ModelEnrolment:
    id: int
    gid: str
    client_id: int
    occurrence: ModelOccurrence
    start_date: date
    end_date: date
    status: str = "ACTIVE"
    deleted: bool = False

    @property
    def kind(self) -> str:
        return self.occurrence.kind

    @property
    def live(self) -> bool:
        """ACTIVE and not deleted: what linking and withdrawal require."""
        return self.status == "ACTIVE" and not self.deleted


@dataclass
class World:
    """What the API has accepted so far: occurrences, enrolments and active links."""

    occurrences: dict[int, ModelOccurrence] = field(default_factory=dict)
    enrolments: dict[int, ModelEnrolment] = field(default_factory=dict)
    client_ids: list[int] = field(default_factory=list)
    unit_ids: list[int] = field(default_factory=list)
    links: dict[int, int] = field(default_factory=dict)
    """Active links: session enrolment id to administrative enrolment id."""

    def of_kind(self, kind: str) -> list[ModelEnrolment]:
        return [enrolment for enrolment in self.enrolments.values() if enrolment.kind == kind]

    def close_links_of(self, enrolment_id: int) -> None:
        for session_id, administrative_id in list(self.links.items()):
            if enrolment_id in (session_id, administrative_id):
                del self.links[session_id]

    def orphan_cause(self, session_id: int, administrative_id: int) -> str | None:
        """Return why the reconciler must close this link, or None while it is sound."""
        session = self.enrolments[session_id]
        administrative = self.enrolments[administrative_id]
        if session.deleted or administrative.deleted:
            return "ENROLMENT_DELETED"
        if "CANCELLED" in (session.status, administrative.status):
            return "ENROLMENT_CANCELLED"
        if session.client_id != administrative.client_id:
            return "CLIENT_MISMATCH"
        if administrative.kind != "ADMINISTRATIVE" or session.kind != "SESSION":
            return "OCCURRENCE_KIND_CHANGED"
        if not session.occurrence.units & administrative.occurrence.units:
            return "NO_SHARED_UNITS"
        return None

    def reconcile(self) -> dict[str, int]:
        """Close the orphaned links as the reconciler must; return how many per cause."""
        closed: dict[str, int] = {}
        for session_id, administrative_id in list(self.links.items()):
            cause = self.orphan_cause(session_id, administrative_id)
            if cause is not None:
                del self.links[session_id]
                closed[cause] = closed.get(cause, 0) + 1
        return closed

    def close_links_without_shared_units(self, occurrence_id: int) -> None:
        for session_id, administrative_id in list(self.links.items()):
            session = self.enrolments[session_id]
            administrative = self.enrolments[administrative_id]
            involved = occurrence_id in (session.occurrence.id, administrative.occurrence.id)
            if involved and not session.occurrence.units & administrative.occurrence.units:
                del self.links[session_id]

    def expected_results(
        self, stored: Mapping[int, list[StoredResult]]
    ) -> dict[tuple[int, int], RolledUp]:
        """Return the rolled-up value of every (administrative enrolment, unit) pair.

        ``stored`` maps an enrolment id to its enrolled-unit rows. Only units the administrative
        occurrence carries now and for which the enrolment has a row are included.
        """
        return {
            key: roll_up_unit(candidates) for key, candidates in self._candidates(stored).items()
        }

    def contested(self, stored: Mapping[int, list[StoredResult]]) -> int:
        """Return how many administrative units have more than one candidate result."""
        return sum(
            len([row for row in candidates if row.outcome is not None]) > 1
            for candidates in self._candidates(stored).values()
        )

    def _candidates(
        self, stored: Mapping[int, list[StoredResult]]
    ) -> dict[tuple[int, int], list[StoredResult]]:
        sessions_of: dict[int, list[int]] = {}
        for session_id, administrative_id in self.links.items():
            session = self.enrolments[session_id]
            if session.deleted or session.status == "CANCELLED":
                continue
            sessions_of.setdefault(administrative_id, []).append(session_id)

        candidates: dict[tuple[int, int], list[StoredResult]] = {}
        for administrative in self.of_kind("ADMINISTRATIVE"):
            own_units = {row.unit_id for row in stored.get(administrative.id, [])}
            for unit_id in administrative.occurrence.units & own_units:
                candidates[(administrative.id, unit_id)] = [
                    row
                    for session_id in sessions_of.get(administrative.id, [])
                    for row in stored.get(session_id, [])
                    if row.unit_id == unit_id
                ]
        return candidates


def link_error(world: World, administrative_id: int, session_id: int) -> str | None:
    """Return the error code linkEnrolments must give for this pair, or None for success."""
    administrative = world.enrolments[administrative_id]
    session = world.enrolments[session_id]
    if world.links.get(session_id) == administrative_id:
        return None
    # Ids passed the wrong way round are reported first, even for two clients' enrolments,
    # with a message that explains how to pass them.
    if administrative.kind == "SESSION" and session.kind == "ADMINISTRATIVE":
        return "WRONG_OCCURRENCE_KIND"
    if administrative.client_id != session.client_id:
        return "CLIENT_MISMATCH"
    if administrative.kind != "ADMINISTRATIVE" or session.kind != "SESSION":
        return "WRONG_OCCURRENCE_KIND"
    if not administrative.live or not session.live:
        return "ENROLMENT_NOT_ACTIVE"
    if not overlap(administrative.occurrence, session.occurrence):
        return "DATES_DO_NOT_OVERLAP"
    if not administrative.occurrence.units & session.occurrence.units:
        return "NO_SHARED_UNITS"
    if session_id in world.links:
        return "ALREADY_LINKED"
    return None


def overlap(first: ModelOccurrence, second: ModelOccurrence) -> bool:
    return first.start_date <= second.end_date and second.start_date <= first.end_date


def link_candidates(world: World, client_id: int, session: ModelOccurrence) -> list[int]:
    """Return the administrative enrolments that "link" without a target may choose from."""
    return [
        enrolment.id
        for enrolment in world.of_kind("ADMINISTRATIVE")
        if enrolment.client_id == client_id
        and enrolment.live
        and overlap(enrolment.occurrence, session)
        and enrolment.occurrence.units & session.units
    ]
