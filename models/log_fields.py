"""Lists of ids in log events, cut so that each event stays one readable line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# An event lists at most this many ids and counts all of them. The reconciler closes up to a
# batch of links at once (1,000 by default), and the API stamps up to a second's outbox rows.
MAX_LOGGED_IDS = 50


def id_fields(name: str, ids: Sequence[int]) -> dict[str, Any]:
    """Return log fields for ``ids``: the first MAX_LOGGED_IDS under ``name``, and their count.

    The count's field is ``name`` with ``_ids`` replaced by ``_count``: ``link_ids`` and
    ``link_count``.
    """
    return {name: list(ids[:MAX_LOGGED_IDS]), name.removesuffix("_ids") + "_count": len(ids)}
