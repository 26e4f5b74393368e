"""The roles an API key or a platform account can have: the one list of them.

The role table per RPC (:mod:`server.api.authz`), key and account creation, the
AdminService's protobuf mapping and the command line all take their roles from
:class:`Role`; the value is what the ``role`` columns store.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a key or an account is for; which RPCs each may call is in ``server.api.authz``."""

    # An ERP system: submits invoices and follows their outcomes.
    ERP = "erp"
    # Answers data-subject requests (export, correction, erasure, consent).
    PRIVACY_OFFICER = "privacy_officer"
    # Reads and verifies the audit trail.
    AUDITOR = "auditor"
    # Administers the tenant (keys, accounts, FBR token); may also use invoices and audit.
    ADMIN = "admin"
