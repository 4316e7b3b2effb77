"""The roll-up: administrative results derived from the results of the linked sessions.

For each unit U of an administrative enrolment, the candidates are the results for U, with an
outcome, in its actively linked session enrolments (link not closed, session enrolment neither
deleted nor cancelled). A final outcome outranks a non-final one (70 continuing, 85 not yet
started), and within a rank the most recently recorded wins (``recorded_at``, then id). The
rolled-up result takes the chosen one's outcome, end date, ``recorded_at`` and
``recorded_by``, points at it through ``source_enrolled_unit_id``, and starts on the earliest
start among the candidates. With no candidate the unit is unrecorded. A session's units that
the administrative enrolment lacks are ignored, because only its own rows are written.

The same derivation, :data:`DERIVED_RESULTS_SQL`, is what the reconciler compares against to
find stale results, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import NON_FINAL_OUTCOME_CODES, OccurrenceKind

# Written to enrolled_unit_history.replaced_by for every value the roll-up replaces.
ROLL_UP_ACTOR = "roll-up"

_NON_FINAL = ", ".join(str(code) for code in sorted(NON_FINAL_OUTCOME_CODES))

# CTEs `targets` (every result of the administrative enrolments whose ids are bound as :ids)
# and `derived` (each target beside the value the roll-up rule gives it now). A statement
# appends its own CTEs and its final SELECT, UPDATE or INSERT.
DERIVED_RESULTS_SQL = f"""
targets AS (
    SELECT eu.id, eu.enrolment_id, eu.unit_id, eu.outcome, eu.start_date, eu.end_date,
           eu.source, eu.source_enrolled_unit_id, eu.recorded_at, eu.recorded_by
    FROM enrolled_units AS eu
    JOIN enrolments AS e ON e.id = eu.enrolment_id
    JOIN occurrences AS o ON o.id = e.occurrence_id
    WHERE eu.enrolment_id = ANY(:ids) AND o.kind = '{OccurrenceKind.ADMINISTRATIVE.value}'
),
candidates AS (
    SELECT t.id AS target_id,
           su.id AS source_id, su.outcome, su.end_date, su.recorded_at, su.recorded_by,
           min(su.start_date) OVER (PARTITION BY t.id) AS earliest_start,
           row_number() OVER (
               PARTITION BY t.id
               ORDER BY (su.outcome IN ({_NON_FINAL})), su.recorded_at DESC NULLS LAST,
                        su.id DESC
           ) AS position
    FROM targets AS t
    JOIN enrolment_links AS l
        ON l.administrative_enrolment_id = t.enrolment_id AND l.unlinked_at IS NULL
    JOIN enrolments AS se
        ON se.id = l.session_enrolment_id
       AND se.deleted_at IS NULL
       AND se.status <> 'CANCELLED'
    JOIN enrolled_units AS su
        ON su.enrolment_id = se.id AND su.unit_id = t.unit_id AND su.outcome IS NOT NULL
),
derived AS (
    SELECT t.*,
           c.outcome AS new_outcome,
           -- The earliest start can only follow the chosen end date when the chosen result has
           -- no start of its own; the true start is then unknown, and a start after the end
           -- would break the row's date check.
           CASE WHEN c.end_date IS NULL OR c.earliest_start <= c.end_date
                THEN c.earliest_start END AS new_start_date,
           c.end_date AS new_end_date,
           c.source_id AS new_source_enrolled_unit_id,
           c.recorded_at AS new_recorded_at,
           c.recorded_by AS new_recorded_by
    FROM targets AS t
    LEFT JOIN candidates AS c ON c.target_id = t.id AND c.position = 1
)
"""

# True where the stored result differs from the derived one.
DIFFERS_SQL = """
(d.outcome, d.start_date, d.end_date, d.source, d.source_enrolled_unit_id,
 d.recorded_at, d.recorded_by)
IS DISTINCT FROM
(d.new_outcome, d.new_start_date, d.new_end_date, 'ROLLED_UP', d.new_source_enrolled_unit_id,
 d.new_recorded_at, d.new_recorded_by)
"""

_LOCK_ENROLMENTS = text(
    "SELECT id, roll_up_version FROM enrolments WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

_APPLY = text(
    f"""
WITH {DERIVED_RESULTS_SQL},
changed AS (
    SELECT d.* FROM derived AS d WHERE {DIFFERS_SQL}
),
history AS (
    INSERT INTO enrolled_unit_history (
        enrolled_unit_id, outcome, start_date, end_date, source, source_enrolled_unit_id,
        recorded_at, recorded_by, replaced_by
    )
    SELECT id, outcome, start_date, end_date, source, source_enrolled_unit_id,
           recorded_at, recorded_by, :actor
    FROM changed
    RETURNING 1
),
updated AS (
    UPDATE enrolled_units AS eu
    SET outcome = c.new_outcome,
        start_date = c.new_start_date,
        end_date = c.new_end_date,
        source = 'ROLLED_UP',
        source_enrolled_unit_id = c.new_source_enrolled_unit_id,
        recorded_at = c.new_recorded_at,
        recorded_by = c.new_recorded_by
    FROM changed AS c
    WHERE eu.id = c.id
    RETURNING eu.id
)
SELECT (SELECT count(*) FROM targets) AS results,
       (SELECT count(*) FROM updated) AS changed,
       (SELECT count(*) FROM history) AS history
"""
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

_MARK_COMPUTED = text(
    """
UPDATE enrolments AS e
SET roll_up_computed_version = v.version, roll_up_computed_at = now()
FROM unnest(CAST(:ids AS bigint[]), CAST(:versions AS bigint[])) AS v(id, version)
WHERE e.id = v.id
"""
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)),
    bindparam("versions", type_=ARRAY(BigInteger)),
)


@dataclass(frozen=True)
class LockedEnrolment:
    id: int
    roll_up_version: int


@dataclass(frozen=True)
class RollUpCounts:
    enrolments: int
    """Enrolments locked and marked computed (ids that do not exist are not counted)."""
    results: int
    """Results of administrative enrolments that the rule was applied to."""
    changed: int
    """Results whose value changed; each one added a history row."""

    def as_dict(self) -> dict[str, int]:
        return {"enrolments": self.enrolments, "results": self.results, "changed": self.changed}


async def lock_enrolments(
    session: AsyncSession, enrolment_ids: Iterable[int]
) -> list[LockedEnrolment]:
    """Lock the enrolments in id order and return their ids and roll_up_version.

    Taking the locks again later in the same transaction returns at once, so a caller may lock
    first, check something under the lock, and then call :func:`roll_up`.
    """
    ids = sorted(set(enrolment_ids))
    if not ids:
        return []
    rows = (await session.execute(_LOCK_ENROLMENTS, {"ids": ids})).all()
    return [LockedEnrolment(row.id, row.roll_up_version) for row in rows]


async def roll_up(
    session: AsyncSession, administrative_enrolment_ids: Iterable[int]
) -> RollUpCounts:
    """Recompute the results of the administrative enrolments; flushes only, never commits.

    The enrolments are locked in id order, so two roll-ups of overlapping sets queue behind
    each other instead of deadlocking, and a change that increments ``roll_up_version`` waits
    for this transaction. The derivation runs after the lock is held, so under READ COMMITTED it
    reads every change committed before, and the second of two concurrent roll-ups finds nothing
    left to change. Running it twice changes nothing and adds no history.
    """
    locked = await lock_enrolments(session, administrative_enrolment_ids)
    if not locked:
        return RollUpCounts(enrolments=0, results=0, changed=0)
    locked_ids = [row.id for row in locked]

    applied = (await session.execute(_APPLY, {"ids": locked_ids, "actor": ROLL_UP_ACTOR})).one()

    # No other transaction can increment roll_up_version while the lock is held, so the
    # version read is the one this computation saw. A change after the commit increments it
    # again and leaves the roll-up pending.
    await session.execute(
        _MARK_COMPUTED,
        {"ids": locked_ids, "versions": [row.roll_up_version for row in locked]},
    )
    return RollUpCounts(
        enrolments=len(locked_ids), results=applied.results, changed=applied.changed
    )
