"""Mutations of this area, one module each; `Mutations` collects their fields."""

from __future__ import annotations

import strawberry

from schema.reconciliation.reconcile_links import reconcile_links


@strawberry.type
class Mutations:
    reconcile_links = strawberry.mutation(
        resolver=reconcile_links,
        description="Run the reconciler now: close orphaned links, request roll-ups of stale "
        "administrative results, and return the run.",
    )
