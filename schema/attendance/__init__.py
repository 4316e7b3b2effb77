"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.attendance.create_class import create_class
from schema.attendance.record_attendance import record_attendance


@strawberry.type
class Mutations:
    create_class = strawberry.mutation(resolver=create_class)
    record_attendance = strawberry.mutation(resolver=record_attendance)
