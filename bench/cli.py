"""Argument parsing for ``python -m bench``; each command lives in its own module."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from bench.database import bench_database, default_server_url
from bench.datasets import DATASETS, load
from bench.targets import Target, table


async def _dataset(name: str, server_url: str, keep: bool) -> None:
    dataset = DATASETS[name]
    print(f"creating a database on {server_url.rsplit('@', 1)[-1]} for {name}")
    started = time.perf_counter()
    async with bench_database(server_url, keep=keep) as url:
        await load(url, dataset)
    print(f"done in {time.perf_counter() - started:.2f} s")


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _print_setting(load_before: str) -> None:
    from bench.report import machine, versions

    # Other processes on the machine skew every figure, so the load is printed with them.
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {_load_average()}")
    print(f"versions: {versions()}")


def _ladder(server_url: str, quick: bool) -> list[Target]:
    from bench.ladder import run_ladder
    from bench.report import ratios, same_data
    from bench.report import table as ladder_table

    load_before = _load_average()
    levels = asyncio.run(run_ladder(server_url, quick=quick))
    same = same_data(levels)
    print()
    _print_setting(load_before)
    print(f"all levels returned the same data: {'yes' if same else 'NO'}")
    print()
    print(ladder_table(levels))
    print()
    targets, lines = ratios(levels)
    print("\n".join(lines))
    if not same:
        targets.append(Target("nested read: every level returns the same data", "no", "yes", False))
    return targets


def _all(server_url: str, quick: bool) -> None:
    """Run the ladder, the workers and the mutations, then print every target in one table."""
    from bench.mutations import run_mutations
    from bench.workers_bench import run_workers_bench

    load_before = _load_average()
    targets = _ladder(server_url, quick)
    for title, run in (
        ("workers on bench-large", run_workers_bench),
        ("mutations on bench-500", run_mutations),
    ):
        print()
        print(f"{title}:")
        lines, measured = asyncio.run(run(server_url))
        print("\n".join(lines))
        targets += measured
    print()
    _print_setting(load_before)
    print()
    print(table(targets))


def _inprocess() -> None:
    from bench.inprocess import main as measure
    from bench.load import Phase

    specification = json.loads(sys.stdin.read())
    phases = [Phase(*phase) for phase in specification["phases"]]
    measure(
        specification["document"], specification["variables"], specification["compiled"], phases
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of Enrolink; with no command, run all of them and print every "
        "target in one table.",
    )
    database_help = (
        "PostgreSQL server on which the bench creates (and drops) its own database; "
        "default: ENROLINK_TEST_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--database-url", default=default_server_url(), help=database_help)
    # Each command accepts --database-url after its name too; SUPPRESS keeps the top-level
    # value when the command's own is not given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=argparse.SUPPRESS, help=database_help)
    commands = parser.add_subparsers(dest="command")
    everything = commands.add_parser(
        "all",
        parents=[common],
        help="run the ladder, the workers and the mutations, and print every target in one "
        "table (the default)",
    )
    everything.add_argument(
        "--quick", action="store_true", help="run the ladder with far fewer requests"
    )
    ladder = commands.add_parser(
        "ladder", parents=[common], help="run the nested-read ladder on bench-500"
    )
    ladder.add_argument(
        "--quick", action="store_true", help="send far fewer requests, to check the bench runs"
    )
    dataset = commands.add_parser(
        "dataset", parents=[common], help="load a dataset and report how long it took"
    )
    dataset.add_argument("name", choices=sorted(DATASETS))
    dataset.add_argument(
        "--keep", action="store_true", help="keep the database instead of dropping it"
    )
    serve = commands.add_parser("serve", help="internal: run one server of the ladder")
    serve.add_argument("kind", choices=["physical", "naive", "enrolink"])
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--serve-database-url", required=True)
    serve.add_argument("--occurrence-id", type=int, required=True)
    commands.add_parser("inprocess", help="internal: measure L4, specification on stdin")
    commands.add_parser(
        "mutations",
        parents=[common],
        help="time linkEnrolments and recordResult against their statements sent with asyncpg, "
        "and the outbox lag under a burst",
    )
    commands.add_parser(
        "workers",
        parents=[common],
        help="time the set-based roll-up and the reconciler over bench-large",
    )
    profile = commands.add_parser(
        "profile",
        parents=[common],
        help="print a cProfile of one ladder request executed in-process",
    )
    profile.add_argument(
        "--compiled", action="store_true", help="profile the compiled path instead of resolvers"
    )
    arguments = parser.parse_args(argv)
    if arguments.command != "serve":
        from enrolink.logging import configure_logging

        # The reconciler and the roll-ups run in this process too, and their INFO events (one
        # per batch) would come between the figures.
        configure_logging(level="WARNING")

    if arguments.command == "dataset":
        asyncio.run(_dataset(arguments.name, arguments.database_url, arguments.keep))
    elif arguments.command == "serve":
        from bench.servers import serve as run_server

        run_server(
            arguments.kind, arguments.port, arguments.serve_database_url, arguments.occurrence_id
        )
    elif arguments.command == "inprocess":
        _inprocess()
    elif arguments.command == "mutations":
        from bench.mutations import main as mutations_main

        mutations_main(arguments.database_url)
    elif arguments.command == "workers":
        from bench.workers_bench import main as workers_main

        workers_main(arguments.database_url)
    elif arguments.command == "profile":
        from bench.profiling import main as profile_main

        profile_main(arguments.database_url, arguments.compiled)
    elif arguments.command == "ladder":
        targets = _ladder(arguments.database_url, quick=arguments.quick)
        print()
        print(table(targets))
    else:
        _all(arguments.database_url, quick=getattr(arguments, "quick", False))
