"""structlog set up once per process: console lines in development, JSON lines otherwise.

Events are named ``<noun>.<past participle>`` (``link.created``, ``roll_up.finished``) and carry
ids as keyword fields. Request ids and task ids are bound with contextvars.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from enrolink.settings import Settings

_handler: logging.Handler | None = None

# uvicorn's standard-library loggers. `enrolink serve` sends their records to the root handler
# below instead of to uvicorn's own formatters.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_logging(
    *,
    log_format: str = "auto",
    level: str = "INFO",
    development: bool = False,
    force: bool = False,
) -> None:
    """Configure structlog and the standard library's logging to write through one renderer.

    Only the first call in a process takes effect, so the command line, the app factory and the
    Celery signals may all call it. ``force=True`` configures again, for tests.
    """
    global _handler
    if _handler is not None and not force:
        return

    as_json = log_format == "json" or (log_format == "auto" and not development)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    tail: list[Any]
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        tail = [structlog.processors.format_exc_info, renderer]
    else:
        # ConsoleRenderer formats exc_info itself and warns when format_exc_info ran before it.
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        tail = [renderer]

    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )

    # Libraries (uvicorn, Celery, SQLAlchemy) log through the standard library. Their records go
    # through the same processors, so one process writes one format.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _name_uvicorn_access],
            pass_foreign_args=True,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic 1.18+ logs one INFO line per autogenerate plugin at every command, even upgrade,
    # and pgserver 0.1.4 logs every command line it runs with its whole output at INFO.
    for noisy in ("alembic.runtime.plugins", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _handler = handler


def configure_logging_from_settings(settings: Settings, *, force: bool = False) -> None:
    """Configure logging from ENROLINK_LOG_FORMAT, ENROLINK_LOG_LEVEL and ENROLINK_ENVIRONMENT."""
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        development=settings.is_development,
        force=force,
    )


def root_handler() -> logging.Handler:
    """Return the handler that renders standard-library records, configuring logging if needed.

    uvicorn's ``log_config`` names this factory, so every server process, including those that
    ``--workers`` spawns afresh, configures logging from the settings before it serves.
    """
    if _handler is None:
        from enrolink.settings import get_settings

        configure_logging_from_settings(get_settings())
    assert _handler is not None
    return _handler


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """Return the ``logging.config.dictConfig`` that uvicorn applies in each server process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"enrolink": {"()": "enrolink.logging.root_handler"}},
        "root": {"handlers": ["enrolink"], "level": level},
        # uvicorn's default configuration gives these loggers handlers of their own and stops
        # their propagation. Here they have none and propagate to the root handler.
        "loggers": {name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
    }


def _name_uvicorn_access(logger: Any, method_name: str, event_dict: Any) -> Any:
    """Turn uvicorn's access line into an ``http.access_logged`` event with fields.

    It drops the ``%`` arguments of other records, whose message getMessage() already formatted.
    """
    arguments = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if record is None or record.name != "uvicorn.access":
        return event_dict
    if not isinstance(arguments, tuple) or len(arguments) != 5:
        return event_dict
    client, method, path, http_version, status = arguments
    event_dict.update(
        event="http.access_logged",
        client=client,
        method=method,
        path=path,
        http_version=http_version,
        status=status,
    )
    return event_dict


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
