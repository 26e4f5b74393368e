"""The hub's tables, as typed SQLAlchemy 2 models, one module per area.

Importing this package registers every table on the one ``Base.metadata`` (what Alembic and
the tests compare the schema against), and re-exports the model classes, so callers write
``from server.db.models import Invoice`` whichever module defines the table.
"""

from server.db.models.access import Account, AccountStatus, ApiKey, FbrEnvironment, Tenant
from server.db.models.audit import AuditChainHead, AuditEvent
from server.db.models.base import NAMING_CONVENTION, Base, BigIntId, UtcDateTime
from server.db.models.invoices import (
    DUE_CONDITION,
    DeliveryAttempt,
    Invoice,
    InvoiceState,
    ReferenceSnapshot,
    ResultEvent,
)
from server.db.models.privacy import (
    ConsentEvent,
    InvoiceAnnotation,
    PrivacyRequest,
    RetentionHold,
    SupportMessage,
)

__all__ = [
    "DUE_CONDITION",
    "NAMING_CONVENTION",
    "Account",
    "AccountStatus",
    "ApiKey",
    "AuditChainHead",
    "AuditEvent",
    "Base",
    "BigIntId",
    "ConsentEvent",
    "DeliveryAttempt",
    "FbrEnvironment",
    "Invoice",
    "InvoiceAnnotation",
    "InvoiceState",
    "PrivacyRequest",
    "ReferenceSnapshot",
    "ResultEvent",
    "RetentionHold",
    "SupportMessage",
    "Tenant",
    "UtcDateTime",
]
