"""schema.graphql at the repository root is generated from the code and kept current."""

from __future__ import annotations

from pathlib import Path

from schema import build_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_is_current() -> None:
    expected = build_schema().as_str() + "\n"

    assert SCHEMA_FILE.read_text(encoding="utf-8") == expected, (
        "schema.graphql is out of date; regenerate it with `python -m schema > schema.graphql`."
    )
