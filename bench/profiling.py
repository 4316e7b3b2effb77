"""A cProfile of one ladder request through the resolvers, to show where the time goes."""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import uuid

from bench.database import bench_database, sqlalchemy_url
from bench.datasets import DATASETS, load
from bench.ladder import LADDER_DOCUMENT, PAGE, _enrolink_environment, _variables


async def _profile_once(url: str, compiled: bool, limit: int) -> str:
    os.environ.update(_enrolink_environment(sqlalchemy_url(url), compiled))
    from enrolink.app import create_graphql
    from enrolink.settings import load_settings
    from models.db import create_engine_from_settings, create_sessionmaker
    from models.enums import TokenRole
    from schema.compiled import compiled_reads
    from schema.context import Caller, Context

    settings = load_settings()
    schema = create_graphql(settings, None).schema
    engine = create_engine_from_settings(settings, application_name="enrolink-bench")
    sessionmaker = create_sessionmaker(engine)

    async def execute() -> None:
        async with sessionmaker() as session:
            context = Context(
                session=session,
                caller=Caller(role=TokenRole.STAFF),
                request_id=uuid.uuid4().hex,
                default_page_size=settings.default_page_size,
                max_page_size=settings.max_page_size,
            )
            with compiled_reads(compiled):
                result = await schema.execute(
                    LADDER_DOCUMENT, _variables(PAGE), context_value=context
                )
            assert not result.errors, result.errors

    try:
        # The first request warms the plan cache, prepared statements and imports.
        await execute()
        profiler = cProfile.Profile()
        profiler.enable()
        await execute()
        profiler.disable()
    finally:
        await engine.dispose()
    output = io.StringIO()
    stats = pstats.Stats(profiler, stream=output)
    stats.sort_stats("tottime").print_stats(limit)
    return output.getvalue()


async def run_profile(server_url: str, *, compiled: bool, limit: int = 25) -> str:
    async with bench_database(server_url) as url:
        await load(url, DATASETS["bench-500"], progress=False)
        return await _profile_once(url, compiled, limit)


def main(server_url: str, compiled: bool) -> None:
    print(asyncio.run(run_profile(server_url, compiled=compiled)))
