"""The Celery application, configured from :class:`enrolink.settings.Settings`.

``app`` reads the settings from the environment the first time its configuration is needed, so
importing this module needs no Redis URL; ``celery -A workers.celery_app`` finds it. The
command line and the tests build their own with :func:`create_celery_app`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery

from enrolink.settings import Settings, get_settings
from models.outbox import RECONCILE_TASK, ROLL_UP_TASK
from workers.base import EnrolinkTask

RELAY_OUTBOX_TASK = "enrolink.relay_outbox"

# kombu's Redis transport (5.7) sweeps for abandoned messages every 10 s but scans Redis only
# on every 10th sweep. Scanning on every sweep, every tenth of the visibility timeout (1 to
# 60 s), brings a killed worker's task back at most that much after the visibility timeout.
UNACKED_RESTORE_INTERVAL_RANGE_SECONDS = (1, 60)
# Seconds between checks of the long-lived Redis connections. It is kombu's default, stated here
# because it bounds how long a broken consumer connection goes unnoticed (about a minute).
HEALTH_CHECK_INTERVAL_SECONDS = 25
# A publish that waits longer than this on a Redis that stopped responding fails, and the outbox
# relay sends the task later.
BROKER_SOCKET_TIMEOUT_SECONDS = 10.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return the Celery configuration for these settings."""
    visibility_timeout = settings.task_visibility_timeout_seconds
    low, high = UNACKED_RESTORE_INTERVAL_RANGE_SECONDS
    restore_interval = max(low, min(high, visibility_timeout // 10))
    return {
        "broker_url": settings.broker_url(),
        "broker_connection_timeout": settings.broker_connect_timeout_seconds,
        # A worker or beat started before Redis keeps trying to connect instead of exiting.
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
            # A worker killed while it held the restore mutex would otherwise block every sweep
            # for kombu's default of 300 s, longer than a short visibility timeout.
            "unacked_mutex_expire": min(300, visibility_timeout),
            "socket_connect_timeout": settings.broker_connect_timeout_seconds,
            "socket_timeout": BROKER_SOCKET_TIMEOUT_SECONDS,
            "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        },
        # A publish is not retried. Once kombu has tried to connect for
        # broker_connection_timeout it fails, the outbox row stays unpublished, and the relay
        # sends it later. A Redis that accepts the connection but stops responding is given
        # BROKER_SOCKET_TIMEOUT_SECONDS instead.
        "task_publish_retry": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "timezone": "UTC",
        "enable_utc": True,
        # Results live in PostgreSQL (the rows a task writes), so there is no result backend.
        "result_backend": None,
        "task_ignore_result": True,
        # A task is acknowledged after it ran, so a worker that dies mid-task leaves it in Redis
        # to be delivered again. Every task is safe to run twice.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Queues are declared on first use (task_create_missing_queues), by name from the routes
        # and from the worker's --queues.
        "task_default_queue": settings.roll_up_queue,
        "task_routes": {
            ROLL_UP_TASK: {"queue": settings.roll_up_queue},
            RELAY_OUTBOX_TASK: {"queue": settings.roll_up_queue},
            RECONCILE_TASK: {"queue": settings.reconcile_queue},
        },
        "beat_schedule": beat_schedule(settings),
        # structlog renders Celery's records too (see workers.base); Celery must not replace
        # the root handler.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    relay_every = settings.outbox_relay_interval_seconds
    reconcile_every = settings.reconcile_interval_seconds
    return {
        "relay-outbox": {
            "task": RELAY_OUTBOX_TASK,
            "schedule": timedelta(seconds=relay_every),
            # A relay not started by the time the next one is due is dropped, so a stopped
            # worker does not find a pile of them when it comes back.
            "options": {"expires": relay_every},
        },
        "reconcile-links": {
            "task": RECONCILE_TASK,
            "schedule": timedelta(seconds=reconcile_every),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": reconcile_every},
        },
    }


class EnrolinkCelery(Celery):  # type: ignore[misc]  # Celery ships no type hints.
    """A Celery app that carries the settings it was configured from."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__("enrolink", task_cls=EnrolinkTask, set_as_current=False)
        self._enrolink_settings = settings
        # Evaluated when the configuration is first read, not at import.
        self.add_defaults(lambda: celery_config(self.enrolink_settings))
        _register_tasks(self)

    @property
    def enrolink_settings(self) -> Settings:
        if self._enrolink_settings is None:
            self._enrolink_settings = get_settings()
        return self._enrolink_settings


def _register_tasks(app: EnrolinkCelery) -> None:
    from workers.reconciliation import reconcile_task
    from workers.relay import relay_outbox_task
    from workers.roll_up import roll_up_task

    # shared=False: Celery otherwise adds a task to every app created in the process, which
    # would put Enrolink's tasks into unrelated apps (a test's) and clash with their names.
    app.task(name=ROLL_UP_TASK, bind=True, shared=False)(roll_up_task)
    app.task(name=RECONCILE_TASK, bind=True, shared=False)(reconcile_task)
    # Beat sends the relay every few seconds; its runs that find nothing are logged at DEBUG.
    app.task(name=RELAY_OUTBOX_TASK, bind=True, shared=False, quiet_when_idle=True)(
        relay_outbox_task
    )


def create_celery_app(settings: Settings) -> EnrolinkCelery:
    return EnrolinkCelery(settings)


app = EnrolinkCelery()
