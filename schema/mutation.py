"""The root Mutation type, made of each area's mutations (one module per mutation)."""

from __future__ import annotations

import strawberry

from schema import (
    attendance,
    catalogue,
    clients,
    enrolment,
    linking,
    money,
    occurrences,
    reconciliation,
    results,
)


@strawberry.type
class Mutation(
    catalogue.Mutations,
    occurrences.Mutations,
    clients.Mutations,
    enrolment.Mutations,
    linking.Mutations,
    results.Mutations,
    attendance.Mutations,
    money.Mutations,
    reconciliation.Mutations,
):
    pass
