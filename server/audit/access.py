"""Auditing of refused calls: missing or invalid API keys, and roles without the right."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from server.audit.trail import SYSTEM_TENANT, NewAuditEvent, record_audit
from server.db.engine import Database
from server.db.models import ApiKey
from server.db.notify import Notifier


class AccessAuditor:
    """Audits refused calls: missing or invalid API keys, and roles without the right.

    A refused call with a key id that exists goes to that key's tenant; anything else goes
    to the :data:`SYSTEM_TENANT` chain. The presented secret is never recorded.
    """

    def __init__(self, db: Database, notifier: Notifier | None = None) -> None:
        self._db = db
        self._notifier = notifier

    async def unauthenticated(self, method: str, key_id: str | None) -> None:
        """Record a call refused for lack of a valid key."""
        tenant_id, reason = SYSTEM_TENANT, "NO_KEY" if key_id is None else "UNKNOWN_KEY"
        if key_id is not None:
            async with self._db.read("apikey.lookup") as session:
                key = await session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
            if key is not None:
                tenant_id = key.tenant_id
                reason = "REVOKED_KEY" if key.revoked_at is not None else "WRONG_SECRET"
        await record_audit(
            self._db,
            [
                NewAuditEvent(
                    tenant_id=tenant_id,
                    actor=f"apikey:{key_id}" if key_id else "anonymous",
                    action="auth.failed",
                    resource=f"rpc{method}",
                    outcome="UNAUTHENTICATED",
                    details={"reason": reason},
                )
            ],
            self._notifier,
        )

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
