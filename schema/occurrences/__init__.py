"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.occurrences.add_occurrence_units import add_occurrence_units
from schema.occurrences.create_occurrence import create_occurrence
from schema.occurrences.remove_occurrence_unit import remove_occurrence_unit


@strawberry.type
class Mutations:
    create_occurrence = strawberry.mutation(resolver=create_occurrence)
    add_occurrence_units = strawberry.mutation(resolver=add_occurrence_units)
    remove_occurrence_unit = strawberry.mutation(resolver=remove_occurrence_unit)
