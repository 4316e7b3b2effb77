"""The reconciler: closes orphaned links and requests roll-ups of stale administrative results.

An active link is orphaned when one of its enrolments is deleted or cancelled, or when the two
belong to different clients (after a client merge). It is also orphaned when an occurrence's
kind changed, so the administrative side is no longer ADMINISTRATIVE or the session side no
longer SESSION, and when the two occurrences no longer share a unit. An administrative result
is stale when it differs from what the roll-up rule gives now while its roll-up is not pending,
which means some change did not request one.

Each check scans in keyset batches without locks, then locks what it found with
``FOR UPDATE SKIP LOCKED`` and checks again under the lock. A row that another transaction has
locked is counted as found but not repaired, and the next run picks it up. Every
administrative enrolment involved gets its roll-up requested through the outbox.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import BigInteger, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from models.enums import OccurrenceKind
from models.log_fields import id_fields
from models.outbox import request_roll_up
from models.roll_up import DERIVED_RESULTS_SQL, DIFFERS_SQL
from models.tables import ReconciliationCount, ReconciliationRun

log = structlog.get_logger(__name__)


class ReconciliationCause(enum.StrEnum):
    ENROLMENT_DELETED = "ENROLMENT_DELETED"
    ENROLMENT_CANCELLED = "ENROLMENT_CANCELLED"
    CLIENT_MISMATCH = "CLIENT_MISMATCH"
    OCCURRENCE_KIND_CHANGED = "OCCURRENCE_KIND_CHANGED"
    NO_SHARED_UNITS = "NO_SHARED_UNITS"
    STALE_RESULT = "STALE_RESULT"


ORPHAN_CAUSES = (
    ReconciliationCause.ENROLMENT_DELETED,
    ReconciliationCause.ENROLMENT_CANCELLED,
    ReconciliationCause.CLIENT_MISMATCH,
    ReconciliationCause.OCCURRENCE_KIND_CHANGED,
    ReconciliationCause.NO_SHARED_UNITS,
)

# The sentence after the cause in enrolment_links.unlink_reason; the cause comes first, so
# cause_of_unlink_reason() recovers it.
_UNLINK_SENTENCES = {
    ReconciliationCause.ENROLMENT_DELETED: "one of the two enrolments was deleted.",
    ReconciliationCause.ENROLMENT_CANCELLED: "one of the two enrolments was cancelled.",
    ReconciliationCause.CLIENT_MISMATCH: "the two enrolments belong to different clients.",
    ReconciliationCause.OCCURRENCE_KIND_CHANGED: (
        "the administrative side is no longer in an ADMINISTRATIVE occurrence or the session "
        "side no longer in a SESSION occurrence."
    ),
    ReconciliationCause.NO_SHARED_UNITS: "the two occurrences no longer share a unit.",
}
_UNLINK_REASON_SEPARATOR = ": Closed by the reconciler because "


def unlink_reason(cause: ReconciliationCause) -> str:
    """Return the unlink reason written for an orphaned link, e.g. ``"CLIENT_MISMATCH: ..."``."""
    return f"{cause.value}{_UNLINK_REASON_SEPARATOR}{_UNLINK_SENTENCES[cause]}"


def cause_of_unlink_reason(reason: str | None) -> ReconciliationCause | None:
    """Return the cause of a link the reconciler closed, or None for any other reason."""
    if reason is None or _UNLINK_REASON_SEPARATOR not in reason:
        return None
    code = reason.partition(_UNLINK_REASON_SEPARATOR)[0]
    try:
        return ReconciliationCause(code)
    except ValueError:
        return None


# The cause of an active link's orphaning, or NULL while the link is sound. The first cause
# that applies is the one counted, so a link is counted once.
_ORPHAN_CAUSE_SQL = f"""
CASE
    WHEN ae.deleted_at IS NOT NULL OR se.deleted_at IS NOT NULL
        THEN '{ReconciliationCause.ENROLMENT_DELETED.value}'
    WHEN ae.status = 'CANCELLED' OR se.status = 'CANCELLED'
        THEN '{ReconciliationCause.ENROLMENT_CANCELLED.value}'
    WHEN ae.client_id <> se.client_id
        THEN '{ReconciliationCause.CLIENT_MISMATCH.value}'
    WHEN ao.kind <> '{OccurrenceKind.ADMINISTRATIVE.value}'
      OR so.kind <> '{OccurrenceKind.SESSION.value}'
        THEN '{ReconciliationCause.OCCURRENCE_KIND_CHANGED.value}'
    WHEN NOT EXISTS (
        SELECT 1
        FROM occurrence_units AS au
        JOIN occurrence_units AS su ON su.unit_id = au.unit_id
        WHERE au.occurrence_id = ao.id AND su.occurrence_id = so.id
    )
        THEN '{ReconciliationCause.NO_SHARED_UNITS.value}'
END
"""

_ORPHANED_LINKS_FROM = f"""
FROM enrolment_links AS l
JOIN enrolments AS ae ON ae.id = l.administrative_enrolment_id
JOIN enrolments AS se ON se.id = l.session_enrolment_id
JOIN occurrences AS ao ON ao.id = ae.occurrence_id
JOIN occurrences AS so ON so.id = se.occurrence_id
WHERE l.unlinked_at IS NULL AND ({_ORPHAN_CAUSE_SQL}) IS NOT NULL
"""

_SCAN_ORPHANED_LINKS = text(
    f"""
SELECT l.id, l.administrative_enrolment_id, {_ORPHAN_CAUSE_SQL} AS cause
{_ORPHANED_LINKS_FROM}
  AND l.id > :after
ORDER BY l.id
LIMIT :batch_size
"""
)

_LOCK_ORPHANED_LINKS = text(
    f"""
SELECT l.id, l.administrative_enrolment_id, {_ORPHAN_CAUSE_SQL} AS cause
{_ORPHANED_LINKS_FROM}
  AND l.id = ANY(:ids)
ORDER BY l.id
FOR UPDATE OF l SKIP LOCKED
"""
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

_CLOSE_LINKS = text(
    """
UPDATE enrolment_links AS l
SET unlinked_at = now(), unlink_reason = c.reason
FROM unnest(CAST(:ids AS bigint[]), CAST(:reasons AS text[])) AS c(id, reason)
WHERE l.id = c.id
"""
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

# Administrative enrolments whose roll-up is not pending, in keyset order.
_SCAN_SETTLED_ENROLMENTS = text(
    f"""
SELECT e.id
FROM enrolments AS e
JOIN occurrences AS o ON o.id = e.occurrence_id
WHERE o.kind = '{OccurrenceKind.ADMINISTRATIVE.value}'
  AND e.roll_up_version = e.roll_up_computed_version
  AND e.id > :after
ORDER BY e.id
LIMIT :batch_size
"""
)

_COUNT_STALE_RESULTS = text(
    f"""
WITH {DERIVED_RESULTS_SQL}
SELECT d.enrolment_id, count(*) AS stale
FROM derived AS d
WHERE {DIFFERS_SQL}
GROUP BY d.enrolment_id
"""
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

_LOCK_SETTLED_ENROLMENTS = text(
    """
SELECT id
FROM enrolments
WHERE id = ANY(:ids) AND roll_up_version = roll_up_computed_version
ORDER BY id
FOR UPDATE SKIP LOCKED
"""
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


@dataclass
class CauseCount:
    found: int = 0
    repaired: int = 0


@dataclass
class _Progress:
    counts: dict[ReconciliationCause, CauseCount] = field(
        default_factory=lambda: {cause: CauseCount() for cause in ReconciliationCause}
    )
    batches: int = 0
    complete: bool = True


class _Budget:
    """A deadline after which no new batch starts."""

    def __init__(self, seconds: float | None) -> None:
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def exhausted(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline


async def reconcile(
    session: AsyncSession,
    *,
    trigger: str,
    batch_size: int,
    commit_batches: bool = False,
    time_budget_seconds: float | None = None,
) -> ReconciliationRun:
    """Close orphaned links, request roll-ups for stale results, and record the run.

    With ``commit_batches=False`` (the ``reconcileLinks`` mutation) everything happens in the
    caller's transaction and is only flushed. With ``commit_batches=True`` (the scheduled task)
    the run row and each batch are committed on their own, so locks are held for one batch
    only. The returned run has its ``counts`` loaded: one row per cause, zeros included.
    After ``time_budget_seconds`` no new batch starts and the next run continues.
    """
    run = ReconciliationRun(trigger=trigger)
    session.add(run)
    await session.flush()
    await session.refresh(run)
    if commit_batches:
        await session.commit()
    log.info("reconciliation.started", run_id=run.id, trigger=trigger)

    progress = _Progress()
    budget = _Budget(time_budget_seconds)
    await _close_orphaned_links(session, progress, batch_size, budget, commit_batches)
    await _request_stale_roll_ups(session, progress, batch_size, budget, commit_batches)

    counts = [
        ReconciliationCount(
            run_id=run.id, cause=cause.value, found=count.found, repaired=count.repaired
        )
        for cause, count in sorted(progress.counts.items())
    ]
    session.add_all(counts)
    run.finished_at = (await session.execute(select(func.clock_timestamp()))).scalar_one()
    await session.flush()
    set_committed_value(run, "counts", counts)
    if commit_batches:
        await session.commit()

    log.info(
        "reconciliation.finished",
        run_id=run.id,
        trigger=trigger,
        batches=progress.batches,
        complete=progress.complete,
        **{
            f"{cause.value.lower()}": [count.found, count.repaired]
            for cause, count in progress.counts.items()
            if count.found
        },
    )
    return run


async def _close_orphaned_links(
    session: AsyncSession,
    progress: _Progress,
    batch_size: int,
    budget: _Budget,
    commit_batches: bool,
) -> None:
    after = 0
    while True:
        if budget.exhausted():
            progress.complete = False
            return
        found = (
            await session.execute(_SCAN_ORPHANED_LINKS, {"after": after, "batch_size": batch_size})
        ).all()
        if not found:
            return
        progress.batches += 1
        after = found[-1].id
        cause_found = {row.id: ReconciliationCause(row.cause) for row in found}
        for cause in cause_found.values():
            progress.counts[cause].found += 1

        locked = (await session.execute(_LOCK_ORPHANED_LINKS, {"ids": list(cause_found)})).all()
        if locked:
            # The reason names the cause seen under the lock; the counts keep the cause the
            # scan found, so repaired never exceeds found for a cause.
            await session.execute(
                _CLOSE_LINKS,
                {
                    "ids": [row.id for row in locked],
                    "reasons": [unlink_reason(ReconciliationCause(row.cause)) for row in locked],
                },
            )
            for row in locked:
                progress.counts[cause_found[row.id]].repaired += 1
            await request_roll_up(
                session,
                {row.administrative_enrolment_id for row in locked},
                reason="reconciliation closed orphaned links",
            )
            _log_closed_links(locked)
        if commit_batches:
            await session.commit()
        if len(found) < batch_size:
            return


def _log_closed_links(rows: Any) -> None:
    by_cause: dict[str, list[int]] = {}
    for row in rows:
        by_cause.setdefault(row.cause, []).append(row.id)
    for cause, link_ids in by_cause.items():
        log.info("reconciliation.links_closed", cause=cause, **id_fields("link_ids", link_ids))


async def _request_stale_roll_ups(
    session: AsyncSession,
    progress: _Progress,
    batch_size: int,
    budget: _Budget,
    commit_batches: bool,
) -> None:
    stale = progress.counts[ReconciliationCause.STALE_RESULT]
    after = 0
    while True:
        if budget.exhausted():
            progress.complete = False
            return
        enrolment_ids = (
            (
                await session.execute(
                    _SCAN_SETTLED_ENROLMENTS, {"after": after, "batch_size": batch_size}
                )
            )
            .scalars()
            .all()
        )
        if not enrolment_ids:
            return
        progress.batches += 1
        after = enrolment_ids[-1]

        found = await _stale_results_by_enrolment(session, list(enrolment_ids))
        stale.found += sum(found.values())
        if found:
            locked = (
                (await session.execute(_LOCK_SETTLED_ENROLMENTS, {"ids": sorted(found)}))
                .scalars()
                .all()
            )
            # Checked again under the lock: a roll-up that committed since the scan has
            # already repaired what it found.
            confirmed = await _stale_results_by_enrolment(session, list(locked)) if locked else {}
            if confirmed:
                await request_roll_up(
                    session, confirmed, reason="reconciliation found stale results"
                )
                stale.repaired += sum(
                    min(count, found[enrolment_id]) for enrolment_id, count in confirmed.items()
                )
                log.info(
                    "reconciliation.stale_results_found",
                    administrative_enrolment_ids=sorted(confirmed),
                    results=sum(confirmed.values()),
                )
        if commit_batches:
            await session.commit()
        if len(enrolment_ids) < batch_size:
            return


async def _stale_results_by_enrolment(
    session: AsyncSession, enrolment_ids: list[int]
) -> dict[int, int]:
    rows = (await session.execute(_COUNT_STALE_RESULTS, {"ids": enrolment_ids})).all()
    return {row.enrolment_id: row.stale for row in rows}
