"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.enrolment.enrol_client import enrol_client


@strawberry.type
class Mutations:
    enrol_client = strawberry.mutation(resolver=enrol_client)
