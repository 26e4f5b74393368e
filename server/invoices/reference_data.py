"""FBR reference data for validation: the newest synced snapshot, or the shipped seed.

``fbrhub refdata sync`` fetches FBR's reference lists (clients.fbr.refdata) and stores them
as one JSON snapshot in ``reference_snapshots``. Each hub process keeps the newest snapshot
in memory (re-read every few minutes), so validation never waits on FBR and works offline;
without any stored snapshot, the seed shipped with the package is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from clients.fbr.refdata.client import ReferenceDataClient
from clients.fbr.refdata.snapshot import (
    ReferenceData,
    SnapshotReferenceData,
    load_seed,
    merge_snapshots,
    seed_reference_data,
)
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import Invoice, ReferenceSnapshot

logger = logging.getLogger(__name__)


class ReferenceStore:
    """The reference data this process validates against."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._current: ReferenceData = seed_reference_data()
        self.snapshot_id: int | None = None

    def current(self) -> ReferenceData:
        """The reference data to validate with now (never blocks)."""
        return self._current

    async def run(self, stop: asyncio.Event, interval_seconds: float) -> None:
        """Refresh every ``interval_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:
                logger.exception("could not refresh FBR reference data; keeping the current")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_seconds):
                    await stop.wait()

    async def refresh(self) -> bool:
        """Load the newest stored snapshot if it is newer than the one in use."""
        async with self._db.read("refdata.refresh", quiet=True) as session:
            newest = await session.scalar(
                select(ReferenceSnapshot.id).order_by(ReferenceSnapshot.id.desc()).limit(1)
            )
            if newest is None or newest == self.snapshot_id:
                return False
            row = await session.get(ReferenceSnapshot, newest)
        assert row is not None
        self._current = SnapshotReferenceData(row.data)
        self.snapshot_id = row.id
        logger.info("using FBR reference snapshot %d of %s", row.id, row.fetched_at.isoformat())
        return True


async def sync_reference_data(db: Database, *, base_url: str, token: str, on: dt.date) -> int:
    """Fetch FBR's reference lists and store them as the newest snapshot; returns its id.

    Lists FBR did not return are taken from the previous snapshot (or the seed), so a
    partial answer never shrinks what validation knows.
    """
    async with db.read("refdata.hs_codes") as session:
        previous = await session.scalar(
            select(ReferenceSnapshot.data).order_by(ReferenceSnapshot.id.desc()).limit(1)
        )
        used_hs = await session.execute(select(Invoice.payload).limit(2000))
        hs_codes = sorted(
            {
                item.get("hs_code", "")
                for (payload,) in used_hs
                for item in payload.get("items", [])
                if item.get("hs_code")
            }
        )
    async with ReferenceDataClient(token=token, base_url=base_url) as client:
        fetched: dict[str, Any] = await client.fetch_snapshot(on=on, hs_codes_for_uom=hs_codes)
    snapshot = merge_snapshots(previous or load_seed(), fetched)
    row = ReferenceSnapshot(fetched_at=utcnow(), source=base_url[:200], data=snapshot)
    async with db.write("refdata.store") as session:
        session.add(row)
    return row.id
