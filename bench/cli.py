"""Argument parsing for ``python -m bench``; each command lives in its own module."""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.database import bench_database, default_server_url
from bench.datasets import DATASETS, load


async def _dataset(name: str, server_url: str, keep: bool) -> None:
    dataset = DATASETS[name]
    print(f"creating a database on {server_url.rsplit('@', 1)[-1]} for {name}")
    started = time.perf_counter()
    async with bench_database(server_url, keep=keep) as url:
        await load(url, dataset)
    print(f"done in {time.perf_counter() - started:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=default_server_url(),
        help="PostgreSQL server on which the bench creates (and drops) its own database; "
        "default: ENROLINK_TEST_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/postgres",
    )
    commands = parser.add_subparsers(dest="command")
    dataset = commands.add_parser("dataset", help="load a dataset and report how long it took")
    dataset.add_argument("name", choices=sorted(DATASETS))
    dataset.add_argument(
        "--keep", action="store_true", help="keep the database instead of dropping it"
    )
    arguments = parser.parse_args(argv)

    if arguments.command == "dataset":
        asyncio.run(_dataset(arguments.name, arguments.database_url, arguments.keep))
