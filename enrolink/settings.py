"""Settings read from ``ENROLINK_*`` environment variables, validated once at start-up."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

ENV_PREFIX = "ENROLINK_"
# The file in the data folder where `enrolink dev` writes `export` lines with the URLs of its
# embedded servers, for other shells to source while it runs.
DEV_ENV_FILE_NAME = "env"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable and the expected form."""


class Settings(BaseSettings):
    """Every setting of Enrolink. Each field is read from ``ENROLINK_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    environment: Literal["development", "production"] = Field(
        "production", description="development turns on GraphiQL and console logs."
    )
    database_url: str | None = Field(
        None,
        description="PostgreSQL URL, e.g. postgresql://user:password@host:5432/enrolink. "
        "Unset under `enrolink dev`: an embedded PostgreSQL is started.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL for the Celery broker, e.g. redis://host:6379/0. "
        "Unset under `enrolink dev`: an embedded Redis is started.",
    )
    data_dir: Path = Field(
        Path(".enrolink"), description="Folder for the embedded PostgreSQL and Redis data."
    )
    log_format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto: console in development, JSON otherwise."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level of log lines written."
    )

    http_host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    http_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        8000, description="TCP port the HTTP server listens on."
    )
    worker_metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None,
        description="TCP port on which `enrolink worker` serves Prometheus metrics, on "
        "ENROLINK_HTTP_HOST; unset: the worker serves none.",
    )

    db_pool_size: Annotated[int, Field(ge=1, le=200)] = Field(
        10, description="Connections kept open per API or worker process."
    )
    db_max_overflow: Annotated[int, Field(ge=0, le=200)] = Field(
        5, description="Extra connections allowed above the pool size under load."
    )
    db_pool_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        10.0, description="Seconds a request waits for a free pooled connection before failing."
    )
    db_statement_timeout_ms: Annotated[int, Field(ge=0)] = Field(
        30_000,
        description="PostgreSQL statement_timeout per connection in milliseconds; 0 is none.",
    )
    db_prepared_statement_cache_size: Annotated[int, Field(ge=0)] = Field(
        100,
        description="asyncpg prepared statements cached per connection; set 0 behind a "
        "transaction-mode pooler that cannot keep prepared statements.",
    )

    default_page_size: Annotated[int, Field(ge=1)] = Field(
        100, description="Page size of a connection when `first` is not given."
    )
    max_page_size: Annotated[int, Field(ge=1)] = Field(
        500, description="Largest `first` a connection accepts."
    )

    graphiql: bool | None = Field(
        None, description="Serve GraphiQL at /graphql in a browser; unset: on in development only."
    )
    introspection: bool | None = Field(
        None, description="Allow schema introspection; unset: on in development only."
    )
    field_suggestions: bool | None = Field(
        None,
        description="Add 'Did you mean' hints to validation errors (they reveal the schema); "
        "unset: on in development only.",
    )
    compiled_reads: bool = Field(
        True,
        description="Respond to a query whose whole selection the compiler models with one SQL "
        "statement that builds the JSON in PostgreSQL; false runs every query through resolvers.",
    )
    max_query_depth: Annotated[int, Field(ge=1)] = Field(
        12,
        description="Deepest nesting of fields in a query; a connection's edges and node count "
        "as two levels.",
    )
    max_aliases: Annotated[int, Field(ge=1)] = Field(
        30, description="Aliases a document may use, counted with its fragments expanded."
    )
    max_tokens: Annotated[int, Field(ge=1)] = Field(
        5_000,
        description="Lexical tokens a document may have; also the most fields it may select "
        "once its fragments are expanded.",
    )
    # The whole tree a partner portal asks for (500 enrolments, each with its results and linked
    # session enrolments with theirs) estimates about 290,000, so the default admits it.
    max_query_cost: Annotated[int, Field(ge=1)] = Field(
        500_000,
        description="Estimated values a response may hold: each field counts 1, and a list "
        "multiplies what it selects by its page size (`first`, else the default page size) or "
        "by 10 when it has no paging.",
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        1_048_576,
        description="Largest HTTP request body in bytes; a larger one gets 413 before it is "
        "parsed, whether or not it declares its length.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, as a JSON list, e.g. ["https://portal.example.org"].',
    )

    roll_up_queue: str = Field("roll_up", description="Celery queue of roll-up and relay tasks.")
    reconcile_queue: str = Field(
        "reconcile", description="Celery queue of reconciler runs (long tasks, prefetch 1)."
    )
    outbox_relay_interval_seconds: Annotated[float, Field(gt=0)] = Field(
        5.0, description="How often beat runs the outbox relay."
    )
    outbox_republish_after_seconds: Annotated[float, Field(gt=0)] = Field(
        120.0,
        description="A published outbox row still unprocessed after this many seconds is sent "
        "again (Redis may have lost it).",
    )
    reconcile_interval_seconds: Annotated[float, Field(gt=0)] = Field(
        300.0, description="How often beat runs the orphaned-link reconciler."
    )
    reconcile_batch_size: Annotated[int, Field(ge=1, le=100_000)] = Field(
        1_000, description="Links or results the reconciler locks and repairs per batch."
    )
    reconcile_time_budget_seconds: Annotated[float, Field(gt=0)] = Field(
        600.0,
        description="A scheduled reconciliation stops starting new batches after this many "
        "seconds and leaves the rest to the next run; keep it well below the visibility timeout.",
    )
    outbox_publish_grace_seconds: Annotated[float, Field(ge=0)] = Field(
        10.0,
        description="The relay leaves an outbox row younger than this many seconds to the API, "
        "which publishes it right after its commit.",
    )
    outbox_relay_batch_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        500, description="Outbox rows the relay publishes per transaction."
    )
    outbox_max_publish_count: Annotated[int, Field(ge=1)] = Field(
        10,
        description="The relay stops sending an outbox row after this many publications without "
        "the task completing; the row keeps its last_error for an operator.",
    )
    broker_connect_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        2.0,
        description="Seconds to wait for a connection to Redis before a publish fails; the API "
        "then leaves the task to the outbox relay.",
    )
    task_lock_timeout_ms: Annotated[int, Field(ge=0)] = Field(
        10_000,
        description="PostgreSQL lock_timeout in tasks' transactions, in milliseconds; a task "
        "that waits longer for a row lock is retried with backoff. 0 waits without limit.",
    )
    task_max_retries: Annotated[int, Field(ge=0, le=100)] = Field(
        8,
        description="Retries of a task after an error worth retrying (lost connection, "
        "serialisation failure, deadlock, lock timeout).",
    )
    task_retry_backoff_max_seconds: Annotated[float, Field(gt=0)] = Field(
        60.0,
        description="Largest delay between retries; the delay doubles from 1 second up to this.",
    )
    task_visibility_timeout_seconds: Annotated[int, Field(ge=1)] = Field(
        3_600,
        description="Redis redelivers a task that was not acknowledged after this many seconds, "
        "so it must be longer than the longest task and the longest retry delay. Tests lower it "
        "to see a killed worker's task delivered again.",
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme, separator, rest = value.partition("://")
        if not separator or scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
            raise ValueError(
                "expected a PostgreSQL URL such as postgresql://user:password@host:5432/enrolink"
            )
        return f"postgresql+asyncpg://{rest}"

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
            raise ValueError(
                "expected a Redis URL such as redis://host:6379/0 or redis+socket:///path/redis.sock"
            )
        return value

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @property
    def graphiql_enabled(self) -> bool:
        return self.is_development if self.graphiql is None else self.graphiql

    @property
    def introspection_enabled(self) -> bool:
        return self.is_development if self.introspection is None else self.introspection

    @property
    def field_suggestions_enabled(self) -> bool:
        return self.is_development if self.field_suggestions is None else self.field_suggestions

    def redis_client_url(self) -> str:
        """Return the Redis URL in the form redis-py accepts (``unix://`` for a socket)."""
        url = self.require_redis_url()
        if url.startswith("redis+socket://"):
            return "unix://" + url.removeprefix("redis+socket://")
        return url

    def broker_url(self) -> str:
        """Return the Redis URL in the form Celery's transport accepts (``redis+socket://``)."""
        url = self.require_redis_url()
        if url.startswith("unix://"):
            return "redis+socket://" + url.removeprefix("unix://")
        return url

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise SettingsError(
                f"{ENV_PREFIX}DATABASE_URL is not set. Set it to a PostgreSQL URL such as "
                "postgresql://user:password@host:5432/enrolink, or run `enrolink dev` to use an "
                "embedded PostgreSQL; while `enrolink dev` runs, "
                f"`source {self.data_dir / DEV_ENV_FILE_NAME}` first."
            )
        return self.database_url

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise SettingsError(
                f"{ENV_PREFIX}REDIS_URL is not set. Set it to a Redis URL such as "
                "redis://host:6379/0, or run `enrolink dev` to use an embedded Redis; while "
                f"`enrolink dev` runs, `source {self.data_dir / DEV_ENV_FILE_NAME}` first."
            )
        return self.redis_url


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, turning validation errors into one clear message."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except PydanticSettingsError as error:
        # pydantic-settings decodes list settings as JSON before validation and reports a
        # failure with the field name only; name the variable and the form it expects.
        match = re.search(r'field "(\w+)"', str(error))
        field = match.group(1) if match else "?"
        variable = f"{ENV_PREFIX}{field.upper()}"
        raise SettingsError(
            f"Invalid settings. {variable} is not valid JSON; give a JSON list such as "
            f'["https://portal.example.org"] (got {os.environ.get(variable)!r}).'
        ) from None
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"])
            variable = f"{ENV_PREFIX}{field.upper()}"
            problems.append(f"{variable}: {item['msg']} (got {item.get('input')!r})")
        raise SettingsError("Invalid settings. " + "; ".join(problems)) from None
    if settings.default_page_size > settings.max_page_size:
        raise SettingsError(
            f"{ENV_PREFIX}DEFAULT_PAGE_SIZE ({settings.default_page_size}) is larger than "
            f"{ENV_PREFIX}MAX_PAGE_SIZE ({settings.max_page_size}); lower the default or raise "
            "the maximum."
        )
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once."""
    return load_settings()
