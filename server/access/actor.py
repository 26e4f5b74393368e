"""Who performs an administrative act, as the audit trail records it.

Every act of :mod:`server.access` (creating a tenant, issuing or revoking a key, creating an
account, replacing the FBR token) takes an :class:`Actor` and audits itself in the same
transaction as the change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from server.audit.trail import NewAuditEvent


@dataclass(frozen=True)
class Actor:
    """Who performs an administrative act, and the request it belongs to.

    Attributes:
        name: the audit actor: ``apikey:<key id>`` for the AdminService, ``cli:<user>`` or
            ``cli:<command>`` for the command line, ``system:<component>`` otherwise.
        request_id: the request id of the act ("" if none).
    """

    name: str
    request_id: str = ""

    def event(
        self, tenant_id: uuid.UUID, action: str, resource: str, **details: str
    ) -> NewAuditEvent:
        """An audit event of this actor in a tenant's chain."""
        return NewAuditEvent(
            tenant_id=tenant_id,
            actor=self.name,
            action=action,
            resource=resource,
            request_id=self.request_id,
            details=details,
        )


# Setup code (test fixtures, the demo, benchmarks) that creates tenants and keys directly.
SETUP = Actor("system:setup")
