"""Auditing of refused calls: missing or invalid API keys, and roles without the right.

A call refused for lack of a valid key costs no database write: failures are counted in
memory and written once per window (``FBRHUB_AUTH_AUDIT_WINDOW_SECONDS``) as one
``auth.failed`` event per key id, with the count, in that key's tenant's chain; failures
with no key, or a key id that does not exist, make one event in the system chain. So a
flood of guesses adds a handful of rows a minute, not one per guess, and never slows the
tenant it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select

from server.audit.trail import SYSTEM_TENANT, NewAuditEvent, record_audit
from server.db.engine import Database
from server.db.models import ApiKey
from server.db.notify import Notifier

logger = logging.getLogger(__name__)

# Key ids counted per window; more distinct ones are counted together as unknown keys.
MAX_KEY_IDS = 1000
# Methods named per event (the rest are counted, not named).
_MAX_METHODS = 10


@dataclass
class _Failures:
    count: int = 0
    methods: Counter[str] = field(default_factory=Counter)

    def add(self, method: str) -> None:
        self.count += 1
        if method in self.methods or len(self.methods) < _MAX_METHODS:
            self.methods[method] += 1


class AccessAuditor:
    """Audits refused calls: missing or invalid API keys, and roles without the right.

    The presented secret is never recorded.
    """

    def __init__(
        self, db: Database, notifier: Notifier | None = None, *, window_seconds: float = 60.0
    ) -> None:
        self._db = db
        self._notifier = notifier
        self.window_seconds = window_seconds
        # key id (None: no key, "" : key ids past MAX_KEY_IDS) -> failures this window
        self._failures: dict[str | None, _Failures] = {}

    async def unauthenticated(self, method: str, key_id: str | None) -> None:
        """Count a call refused for lack of a valid key (written by :meth:`flush`)."""
        if key_id and key_id not in self._failures and len(self._failures) >= MAX_KEY_IDS:
            key_id = ""
        self._failures.setdefault(key_id, _Failures()).add(method)

    @property
    def pending(self) -> int:
        """Failures counted but not yet written."""
        return sum(f.count for f in self._failures.values())

    async def flush(self) -> int:
        """Write the window's failures: one event per key id, one for the rest; returns how
        many events were written."""
        failures, self._failures = self._failures, {}
        if not failures:
            return 0
        key_ids = [k for k in failures if k]
        keys: dict[str, ApiKey] = {}
        if key_ids:
            async with self._db.read("apikey.lookup") as session:
                rows = await session.scalars(select(ApiKey).where(ApiKey.key_id.in_(key_ids)))
                keys = {row.key_id: row for row in rows}
        events = []
        unknown = _Failures()
        for key_id, counted in failures.items():
            key = keys.get(key_id) if key_id else None
            if key is None and key_id is not None:
                unknown.count += counted.count
                unknown.methods.update(counted.methods)
                continue
            if key is None:
                events.append(self._event(SYSTEM_TENANT, "anonymous", "NO_KEY", counted))
                continue
            reason = "REVOKED_KEY" if key.revoked_at is not None else "WRONG_SECRET"
            events.append(self._event(key.tenant_id, f"apikey:{key_id}", reason, counted))
        if unknown.count:
            events.append(self._event(SYSTEM_TENANT, "apikey:unknown", "UNKNOWN_KEY", unknown))
        await record_audit(self._db, events, self._notifier)
        return len(events)

    def _event(
        self, tenant_id: uuid.UUID, actor: str, reason: str, failures: _Failures
    ) -> NewAuditEvent:
        return NewAuditEvent(
            tenant_id=tenant_id,
            actor=actor,
            action="auth.failed",
            resource="rpc",
            outcome="UNAUTHENTICATED",
            details={
                "reason": reason,
                "count": str(failures.count),
                "window_seconds": str(int(self.window_seconds)),
                "methods": ",".join(sorted(failures.methods)),
            },
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every window until ``stop`` is set (the last window is flushed by the hub)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.window_seconds)
            if stop.is_set():
                return
            try:
                await self.flush()
            except Exception:
                logger.exception("could not write the failed-authentication audit events")

    async def permission_denied(
        self, method: str, tenant_id: uuid.UUID, key_id: str, role: str
    ) -> None:
        """Record a call refused because the key's role may not call the method."""
        await record_audit(
            self._db,
            [
                NewAuditEvent(
                    tenant_id=tenant_id,
                    actor=f"apikey:{key_id}",
                    action="auth.denied",
                    resource=f"rpc{method}",
                    outcome="PERMISSION_DENIED",
                    details={"role": role},
                )
            ],
            self._notifier,
        )
