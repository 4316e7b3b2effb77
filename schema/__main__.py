"""Write the schema in SDL: ``python -m schema > schema.graphql`` (a test checks it is current)."""

from __future__ import annotations

import sys

from schema import build_schema


def main() -> None:
    sys.stdout.write(build_schema().as_str() + "\n")


if __name__ == "__main__":
    main()
