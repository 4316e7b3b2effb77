"""The per-request context: one session, the dataloaders, and who is calling."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

import structlog
from sqlalchemy import Executable, Select
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import TokenRole
from models.errors import (
    DomainError,
    DomainErrors,
    ErrorCode,
    domain_error_from_integrity,
    is_transaction_conflict,
)
from models.outbox import forget_pending, pending_count

if TYPE_CHECKING:
    from schema.loaders import Loaders

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

log = structlog.get_logger(__name__)

# Attempts of one mutation that PostgreSQL aborts for a deadlock or serialisation failure; a
# conflict that repeats this often is reported as an unexpected error.
WRITE_ATTEMPTS = 3


async def run_to_completion(awaitable: Awaitable[T]) -> T:
    """Await a database call to its end even if the caller is cancelled meanwhile.

    When a field fails, graphql-core cancels its sibling fields. A sibling cancelled while it
    checks out a connection or waits for rows leaves the connection in the middle of a
    statement. The request's rollback then fails on it, so the client gets a bare 500, or an
    unclosed connection is left for the garbage collector. Here the call finishes first,
    under the session lock, and the cancellation is raised after it.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


@dataclass(frozen=True)
class Caller:
    """The sender of a request: a staff member, or a partner bound to one partner organisation."""

    role: TokenRole
    partner_id: int | None = None
    token_id: int | None = None
    name: str = "staff"

    @property
    def is_partner(self) -> bool:
        return self.role is TokenRole.PARTNER


@dataclass
class Context:
    """Everything a resolver needs. Created per request, never shared between requests."""

    session: AsyncSession
    caller: Caller
    request_id: str
    default_page_size: int
    max_page_size: int
    reconcile_batch_size: int = 1_000
    # Sibling fields resolve concurrently, but one AsyncSession must never run two statements
    # at once ("another operation is in progress"), so every use of the session takes this lock.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    has_writes: bool = False
    # The token check wrote the token's last_used_at, so even a read commits.
    token_use_recorded: bool = False
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.reset_loaders()

    def reset_loaders(self) -> None:
        """Start with empty loader caches, so nothing read before a write is served after it."""
        from schema.loaders import Loaders

        self.loaders = Loaders(self)

    async def scalars(self, statement: Executable) -> Sequence[Any]:
        async with self.lock:
            result = await run_to_completion(self.session.execute(statement))
            return result.scalars().all()

    async def rows(self, statement: Select[*Ts]) -> Sequence[Row[*Ts]]:
        async with self.lock:
            return (await run_to_completion(self.session.execute(statement))).all()

    def page_size(self, first: int | None) -> int:
        """Return the page size for a connection's ``first`` argument, or raise INVALID_INPUT."""
        if first is None:
            return self.default_page_size
        if first < 0 or first > self.max_page_size:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"first is {first}; ask for between 0 and {self.max_page_size} items per page "
                "and follow pageInfo.endCursor for more.",
                field="first",
            )
        return first

    def require_staff(self) -> None:
        if self.caller.role is not TokenRole.STAFF:
            raise DomainError(
                ErrorCode.FORBIDDEN,
                "This token is read-only: partner tokens cannot change data. Use a staff token.",
            )

    async def write(self, operation: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run one mutation's domain operation in a savepoint of the request's transaction.

        On a DomainError the savepoint is rolled back, so the database is as it was before this
        mutation, and the error propagates for the payload. A unique violation of a known
        constraint (a concurrent request won the race) becomes the matching DomainError. When
        PostgreSQL aborts the operation for a deadlock or a serialisation failure with a
        concurrent transaction, it is run again from the savepoint, a few times at most.
        The request commits once, after the whole operation.
        """
        self.require_staff()
        attempt = 1
        while True:
            try:
                return await self._write_once(operation)
            except DBAPIError as error:
                if not is_transaction_conflict(error) or attempt >= WRITE_ATTEMPTS:
                    raise
                log.warning(
                    "mutation.retried",
                    request_id=self.request_id,
                    attempt=attempt,
                    error=str(error.orig),
                )
                # A short random pause lets the other transaction finish before this one
                # takes its locks again.
                await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
                attempt += 1

    async def _write_once(self, operation: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self.lock:
            kept = pending_count(self.session)
            savepoint = await self.session.begin_nested()
            try:
                value = await operation(self.session)
                await self.session.flush()
            except (DomainError, DomainErrors):
                await savepoint.rollback()
                forget_pending(self.session, keep=kept)
                raise
            except IntegrityError as error:
                await savepoint.rollback()
                forget_pending(self.session, keep=kept)
                mapped = domain_error_from_integrity(error)
                if mapped is None:
                    raise
                raise mapped from error
            except BaseException:
                await savepoint.rollback()
                forget_pending(self.session, keep=kept)
                raise
            await savepoint.commit()
            self.has_writes = True
        self.reset_loaders()
        return value
