"""Connect the task metrics of :mod:`enrolink.metrics` to Celery's signals in a worker.

Call :func:`install_worker_metrics` once in the worker's main process before the worker starts,
e.g. ``install_worker_metrics(settings.worker_metrics_port, settings.http_host)``. Pool processes
forked afterwards inherit the connected handlers.
"""

from __future__ import annotations

from celery import signals

from enrolink import metrics

# The same dispatch_uid makes a second call replace the handlers instead of counting twice.
_HANDLERS = (
    (signals.task_prerun, metrics.on_task_prerun),
    (signals.task_postrun, metrics.on_task_postrun),
    (signals.task_success, metrics.on_task_success),
    (signals.task_retry, metrics.on_task_retry),
    (signals.task_failure, metrics.on_task_failure),
)


def connect_task_signals() -> None:
    """Count started, succeeded, retried and failed tasks and reconciler results."""
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"enrolink.metrics.{handler.__name__}")


def install_worker_metrics(port: int | None, host: str) -> None:
    """Connect the task signals and, when ``port`` is set, serve /metrics on ``host:port``."""
    connect_task_signals()
    if port is not None:
        metrics.start_worker_metrics_server(port, host)
