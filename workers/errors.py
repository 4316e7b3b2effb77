"""Classification of task errors: a task retries those that a later attempt can get past."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from models.errors import sqlstates

# PostgreSQL SQLSTATE codes that a new attempt can clear. Source: the PostgreSQL 15 manual,
# appendix A "PostgreSQL Error Codes".
RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available: lock_timeout expired, or NOWAIT
        "57P01",  # admin_shutdown: the server is restarting
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: the server is starting
        "53300",  # too_many_connections
    }
)
# Class 08 is "connection exception": the connection was lost or could not be made.
RETRYABLE_SQLSTATE_CLASSES = frozenset({"08"})


def is_retryable(error: BaseException) -> bool:
    """Return True for a lost connection, a serialisation failure, a deadlock or a lock timeout."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, PoolTimeoutError):
        # No pooled connection came free in time.
        return True
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    for code in sqlstates(error):
        if code in RETRYABLE_SQLSTATES or code[:2] in RETRYABLE_SQLSTATE_CLASSES:
            return True
    if isinstance(error, OperationalError) and not sqlstates(error):
        # An OperationalError without a SQLSTATE comes from the driver, not the server: a
        # connection that failed to open or broke mid-statement.
        return True
    return False
