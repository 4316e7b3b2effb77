"""structlog set up once per process: console lines in development, JSON lines otherwise.

Events are named ``<noun>.<past participle>`` (``link.created``, ``roll_up.finished``) and carry
ids as keyword fields. Request ids and task ids are bound with contextvars.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def configure_logging(
    *, log_format: str = "auto", level: str = "INFO", development: bool = False
) -> None:
    """Configure structlog and the standard library's logging to write through one renderer."""
    global _configured
    as_json = log_format == "json" or (log_format == "auto" and not development)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (uvicorn, celery, sqlalchemy) log through the standard library; render those
    # records with the same processors so one process writes one format.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processor=renderer)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _configured = True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
