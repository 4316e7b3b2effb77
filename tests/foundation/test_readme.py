"""README.md documents every setting, with the name, default and description in Settings.

When a setting changes, print the new table and paste it between the markers in README.md:

    .venv/bin/python -m tests.foundation.test_readme
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic.fields import FieldInfo

from enrolink.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_START = "<!-- settings table: start -->"
TABLE_END = "<!-- settings table: end -->"
BOUNDS = [
    (annotated_types.Ge, "ge", "at least"),
    (annotated_types.Gt, "gt", "more than"),
    (annotated_types.Le, "le", "at most"),
    (annotated_types.Lt, "lt", "less than"),
]


def render_settings_table() -> str:
    """Render the Markdown table of every setting, from Settings.model_fields."""
    lines = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        variable = f"`{ENV_PREFIX}{name.upper()}`"
        lines.append(f"| {variable} | {_default_cell(field)} | {_description_cell(field)} |")
    return "\n".join(lines)


def _default_cell(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _description_cell(field: FieldInfo) -> str:
    parts = []
    if field.description:
        parts.append(field.description.replace("|", "\\|"))
    choices = _literal_choices(field.annotation)
    if choices:
        parts.append("One of " + ", ".join(f"`{choice}`" for choice in choices) + ".")
    bounds = _bounds(field)
    if bounds:
        parts.append(bounds)
    return " ".join(parts)


def _literal_choices(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    return []


def _bounds(field: FieldInfo) -> str:
    """Describe the numeric bounds of a setting, e.g. "At least 1, at most 65535."."""
    found = []
    for constraint in field.metadata:
        for kind, attribute, word in BOUNDS:
            if isinstance(constraint, kind):
                limit = getattr(constraint, attribute)
                found.append(f"{word} {limit}")
    if not found:
        return ""
    sentence = ", ".join(found)
    return sentence[0].upper() + sentence[1:] + "."


def _readme_table() -> str:
    content = README.read_text()
    start = content.index(TABLE_START) + len(TABLE_START)
    end = content.index(TABLE_END)
    return content[start:end].strip()


def test_readme_table_lists_every_setting() -> None:
    table = _readme_table()

    for name in Settings.model_fields:
        assert f"`{ENV_PREFIX}{name.upper()}`" in table, f"{ENV_PREFIX}{name.upper()} is missing"


def test_readme_table_matches_settings() -> None:
    assert _readme_table() == render_settings_table(), (
        "The settings table in README.md is out of date. Replace it with the output of "
        "`.venv/bin/python -m tests.foundation.test_readme`."
    )


if __name__ == "__main__":
    print(render_settings_table())
