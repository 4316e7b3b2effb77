"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.money.record_payment import record_payment


@strawberry.type
class Mutations:
    record_payment = strawberry.mutation(resolver=record_payment)
