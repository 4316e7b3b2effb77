"""The `enrolink` command line: migrate, serve, worker, beat, reconcile, seed, token and dev.

Every command reads its settings from ``ENROLINK_*`` environment variables. A missing or
malformed setting ends the command with its message and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from enrolink.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from enrolink.token_commands import add_token_commands

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _default(field: str) -> Any:
    """Return the default of a setting, for help text that must work with a broken environment."""
    return Settings.model_fields[field].default


def _variable(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


# ---------------------------------------------------------------------------------------------
# migrate


def _command_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    settings = _load_and_configure(needs_redis=False)
    database_url = settings.require_database_url()
    shown_url = make_url(database_url).render_as_string(hide_password=True)

    try:
        before, after = asyncio.run(apply_migrations(database_url))
    except (OSError, DBAPIError) as error:
        # A DBAPIError's own text ends with a link to SQLAlchemy's error pages, so only the
        # driver's message is printed.
        reason = error.orig if isinstance(error, DBAPIError) else error
        print(
            f"enrolink migrate: could not migrate the database at {shown_url}: {reason}. "
            f"Check that PostgreSQL is running and that {_variable('database_url')} is right.",
            file=sys.stderr,
        )
        return EXIT_FAILED

    if before == after:
        print(
            f"The database at {shown_url} is already at revision {after} (head), so there is "
            "nothing to migrate."
        )
    else:
        print(
            f"Migrated the database at {shown_url} from revision {before or '(empty database)'} "
            f"to {after} (head)."
        )
    return EXIT_OK


async def apply_migrations(database_url: str) -> tuple[str | None, str | None]:
    """Apply the migrations and return the revisions before and after (None if never migrated)."""
    from models.migrate import upgrade_to_head

    before = await current_revision(database_url)
    await upgrade_to_head(database_url)
    after = await current_revision(database_url)
    return before, after


async def current_revision(database_url: str) -> str | None:
    """Return the Alembic revision of the database, or None when it was never migrated."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            has_table = (
                await connection.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            ).scalar_one()
            if not has_table:
                return None
            revision: str | None = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one_or_none()
            return revision
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------------------------
# serve


def _command_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from enrolink.logging import uvicorn_log_config

    # Checking the URLs here turns a missing one into a one-line error instead of a traceback
    # from the lifespan of every server process.
    settings = _load_and_configure(needs_redis=True)

    uvicorn.run(
        "enrolink.app:create_server_app",
        factory=True,
        host=args.host if args.host is not None else settings.http_host,
        port=args.port if args.port is not None else settings.http_port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_config=uvicorn_log_config(settings.log_level),
        log_level=settings.log_level.lower(),
        access_log=args.access_log,
        timeout_graceful_shutdown=args.shutdown_timeout,
    )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# worker and beat


def _command_worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    settings = _load_and_configure(needs_redis=True)
    queues = (
        [name.strip() for name in args.queues.split(",") if name.strip()] if args.queues else None
    )
    run_worker(
        settings,
        concurrency=args.concurrency,
        queues=queues,
        loglevel=settings.log_level,
    )
    return EXIT_OK


def _command_beat(args: argparse.Namespace) -> int:
    from workers.main import run_beat

    settings = _load_and_configure(needs_redis=True)
    run_beat(settings)
    return EXIT_OK


def _command_reconcile(args: argparse.Namespace) -> int:
    from workers.main import reconcile_once

    settings = _load_and_configure(needs_redis=True)
    run = reconcile_once(settings, trigger="cli")
    print(f"Reconciliation run {run.id}: found and repaired per cause")
    for count in run.counts:
        print(f"  {count.cause}: found {count.found}, repaired {count.repaired}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# seed


def _command_seed(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from models.demo import ADMINISTRATIVE_CODE, SeedOutcome, seed_database
    from models.errors import DomainError

    settings = _load_and_configure(needs_redis=False)
    database_url = settings.require_database_url()
    shown_url = make_url(database_url).render_as_string(hide_password=True)

    try:
        outcome = asyncio.run(seed_database(database_url, print))
    except (OSError, DBAPIError) as error:
        reason = error.orig if isinstance(error, DBAPIError) else error
        print(
            f"enrolink seed: could not load the demo data into the database at {shown_url}: "
            f"{reason}. Nothing was written. Check that PostgreSQL is running, that "
            f"{_variable('database_url')} is right and that `enrolink migrate` has run.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except DomainError as error:
        # The demo's codes clash with data already in the database, e.g. a programme BSB50420.
        print(
            f"enrolink seed: could not load the demo data: {error.message} Nothing was "
            "written; load the demo data into an empty database instead.",
            file=sys.stderr,
        )
        return EXIT_FAILED

    if outcome is SeedOutcome.ALREADY_LOADED:
        print(
            f"The demo data are already in the database at {shown_url} (occurrence "
            f"{ADMINISTRATIVE_CODE} exists), so nothing was loaded."
        )
    else:
        print(f"Loaded the demo data into the database at {shown_url} in one transaction.")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# dev


def _command_dev(args: argparse.Namespace) -> int:
    from enrolink.dev import run_dev
    from enrolink.logging import configure_logging

    settings = load_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level, development=True)
    return run_dev(
        settings,
        host=args.host if args.host is not None else settings.http_host,
        port=args.port if args.port is not None else settings.http_port,
    )


# ---------------------------------------------------------------------------------------------
# parser and entry point


def _load_and_configure(*, needs_redis: bool) -> Settings:
    """Load the settings, check the URLs the command needs, then configure logging."""
    from enrolink.logging import configure_logging_from_settings

    settings = load_settings()
    settings.require_database_url()
    if needs_redis:
        settings.require_redis_url()
    configure_logging_from_settings(settings)
    return settings


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    return number


def _port(value: str) -> int:
    number = _positive_int(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, got {number}")
    return number


def _add_host_and_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        help=f"address to listen on (default: {_variable('http_host')}, "
        f"else {_default('http_host')})",
    )
    parser.add_argument(
        "--port",
        type=_port,
        help=f"TCP port to listen on (default: {_variable('http_port')}, "
        f"else {_default('http_port')})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enrolink",
        description="Enrolink: the GraphQL API and Celery workers for administrative and session "
        "occurrences. Settings come from ENROLINK_* environment variables (see README.md).",
    )
    parser.add_argument("--version", action="version", version=f"enrolink {_package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    migrate = commands.add_parser(
        "migrate",
        help="apply the database migrations",
        description="Bring the database at ENROLINK_DATABASE_URL (required, no default) to the "
        "newest schema revision. A database already there is left unchanged, and replicas "
        "running this at once take turns.",
    )
    migrate.set_defaults(handler=_command_migrate)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP server (GraphQL at /graphql)",
        description="Serve /graphql, /healthz and /readyz with uvicorn. Needs "
        "ENROLINK_DATABASE_URL and ENROLINK_REDIS_URL (no defaults).",
    )
    _add_host_and_port(serve)
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="number of server processes (default: 1)",
    )
    serve.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto "
        "sent by the addresses in --forwarded-allow-ips; turn on only behind a proxy that sets "
        "them (default: off)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="comma-separated proxy addresses trusted with --proxy-headers (default: 127.0.0.1)",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also log uvicorn's access line per request; the application already logs "
        "http.request_finished with the request id (default: off)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=_positive_int,
        default=30,
        help="seconds that requests in flight get to finish after SIGTERM or SIGINT (default: 30)",
    )
    serve.set_defaults(handler=_command_serve)

    worker = commands.add_parser(
        "worker",
        help="run a Celery worker (roll-ups, reconciliation, outbox relay)",
        description="Run a Celery worker on the broker at ENROLINK_REDIS_URL, writing to "
        "ENROLINK_DATABASE_URL (both required, no defaults).",
    )
    worker.add_argument(
        "--concurrency",
        type=_positive_int,
        help="number of worker processes (default: Celery's, the number of CPUs)",
    )
    worker.add_argument(
        "--queues",
        help="comma-separated queues to consume, e.g. roll_up,reconcile (default: every queue "
        f"of Enrolink: {_variable('roll_up_queue')}, else {_default('roll_up_queue')}, and "
        f"{_variable('reconcile_queue')}, else {_default('reconcile_queue')})",
    )
    worker.set_defaults(handler=_command_worker)

    beat = commands.add_parser(
        "beat",
        help="run the Celery beat scheduler",
        description="Send the periodic tasks: the outbox relay every "
        f"{_variable('outbox_relay_interval_seconds')} seconds (default: "
        f"{_default('outbox_relay_interval_seconds')}) and the link reconciler every "
        f"{_variable('reconcile_interval_seconds')} seconds (default: "
        f"{_default('reconcile_interval_seconds')}). Run exactly one beat per deployment.",
    )
    beat.set_defaults(handler=_command_beat)

    reconcile = commands.add_parser(
        "reconcile",
        help="close orphaned links and request roll-ups of stale results, once",
        description="Run the link reconciler now, as beat does every "
        f"{_variable('reconcile_interval_seconds')} seconds (default: "
        f"{_default('reconcile_interval_seconds')}), and print what it found and repaired per "
        "cause. It writes to ENROLINK_DATABASE_URL and sends the roll-ups it requests to "
        "ENROLINK_REDIS_URL (both required).",
    )
    reconcile.set_defaults(handler=_command_reconcile)

    seed = commands.add_parser(
        "seed",
        help="load the demo data (a 2026 cohort of BSB50420) unless already loaded",
        description="Load the demo data into the database at ENROLINK_DATABASE_URL (required, "
        "no default) in one transaction: the twelve units of BSB50420 Diploma of Leadership and "
        "Management, its programmes and occurrences, 24 invented clients, their linked "
        "enrolments, payments, attendance and results, rolled up. A database that already has "
        "them is left unchanged. Run `enrolink migrate` first.",
    )
    seed.set_defaults(handler=_command_seed)

    dev = commands.add_parser(
        "dev",
        help="run everything locally: database, Redis, server, worker and beat",
        description="Start an embedded PostgreSQL unless ENROLINK_DATABASE_URL is set and an "
        "embedded Redis unless ENROLINK_REDIS_URL is set, with their data under "
        f"ENROLINK_DATA_DIR (default: {_default('data_dir')} in the working directory). Then "
        "migrate and run the server, a worker and beat in development mode until Ctrl-C. A "
        "second run reuses the data.",
    )
    _add_host_and_port(dev)
    dev.set_defaults(handler=_command_dev)

    add_token_commands(commands)

    return parser


def _package_version() -> str:
    try:
        return version("enrolink")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    try:
        return handler(args)
    except SettingsError as error:
        print(f"enrolink {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
