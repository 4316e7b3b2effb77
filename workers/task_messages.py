"""Task options that the API and the relay send to Celery for an outbox row, and send outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from models.log_fields import id_fields
from models.outbox import PendingMessage

log = structlog.get_logger(__name__)

# Celery shows kwargsrepr in task events and logs. Its saferepr of the arguments took about a
# sixth of the CPU of a send (Celery 5.7). A plain repr, cut to this length, shows the same.
KWARGS_REPR_CHARS = 1024


@dataclass
class PublishOutcome:
    published: list[int] = field(default_factory=list)
    """Outbox ids that Redis accepted."""
    unsent: list[int] = field(default_factory=list)
    """Outbox ids not sent because a publish failed; they wait for the relay."""
    error: str | None = None

    @classmethod
    def all_sent(cls, messages: Sequence[PendingMessage]) -> PublishOutcome:
        return cls(published=[message.outbox_id for message in messages])

    @classmethod
    def none_sent(cls, messages: Sequence[PendingMessage], error: Exception) -> PublishOutcome:
        return cls(unsent=[message.outbox_id for message in messages], error=repr(error))

    def log_unsent(self) -> None:
        """Log the unsent rows, if any, as ``outbox.publish_failed`` with the error."""
        if self.unsent:
            log.warning(
                "outbox.publish_failed", **id_fields("outbox_ids", self.unsent), error=self.error
            )


def message_kwargs(message: PendingMessage) -> dict[str, Any]:
    """Return the task's keyword arguments: the outbox id and the row's payload."""
    return {**message.payload, "outbox_id": message.outbox_id}


def task_options(message: PendingMessage) -> dict[str, Any]:
    """Return the options of ``send_task`` for an outbox row, apart from the producer."""
    kwargs = message_kwargs(message)
    return {
        "kwargs": kwargs,
        # Fail at once, because the relay is the retry.
        "retry": False,
        "argsrepr": "()",
        "kwargsrepr": repr(kwargs)[:KWARGS_REPR_CHARS],
    }
