"""FBR's reference lists (docs/fbr-coverage.md §3): the client, snapshots and the seed.

- ``snapshot``: :class:`ReferenceData` (what the rules ask), :class:`SnapshotReferenceData`
  (answers from a snapshot dict), ``load_seed`` / ``seed_reference_data``.
- ``client``: :class:`ReferenceDataClient`, one method per endpoint plus ``fetch_snapshot``
  (what ``fbrhub refdata sync`` stores).
- ``seed``: builds ``seed.json``, shipped as package data so validation works offline.
"""

from __future__ import annotations

from clients.fbr.refdata.snapshot import (
    ReferenceData,
    SnapshotReferenceData,
    load_seed,
    merge_snapshots,
    seed_reference_data,
)

__all__ = [
    "ReferenceData",
    "SnapshotReferenceData",
    "load_seed",
    "merge_snapshots",
    "seed_reference_data",
]
