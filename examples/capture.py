"""Run the walkthrough's examples and write their responses into docs/walkthrough.md.

Run from the repository root. ``python -m examples.capture`` rewrites the example blocks of
the walkthrough. ``python -m examples.capture --check`` writes nothing and exits with status 1
when the walkthrough differs from what the examples return now. examples/services.py describes
the servers it uses.
"""

from __future__ import annotations

import argparse
import difflib
import sys

from examples.services import demo
from examples.walkthrough import WALKTHROUGH_PATH, render_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.capture", description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare instead of writing; exit with status 1 when the walkthrough is out of date",
    )
    args = parser.parse_args(argv)

    with demo() as run:
        outcomes = list(run.walkthrough.run_all())

    current = WALKTHROUGH_PATH.read_text(encoding="utf-8")
    updated = render_markdown(current, outcomes)
    if args.check:
        if updated == current:
            print(f"{WALKTHROUGH_PATH} matches the examples.")
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                updated.splitlines(keepends=True),
                fromfile=f"{WALKTHROUGH_PATH.name} (written)",
                tofile=f"{WALKTHROUGH_PATH.name} (returned now)",
            )
        )
        print(f"{WALKTHROUGH_PATH} is out of date; run `python -m examples.capture`.")
        return 1

    WALKTHROUGH_PATH.write_text(updated, encoding="utf-8")
    print(f"Wrote the responses of {len(outcomes)} examples into {WALKTHROUGH_PATH}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
