"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.results.record_result import record_result
from schema.results.record_results import record_results


@strawberry.type
class Mutations:
    record_result = strawberry.mutation(resolver=record_result)
    record_results = strawberry.mutation(resolver=record_results)
