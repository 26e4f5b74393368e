"""The semantic conventions the hub follows, pinned, and the names of its own attributes.

The hub follows OpenTelemetry semantic conventions **v1.44.0**, the version that
``opentelemetry-semantic-conventions==0.66b2`` (pinned in ``pyproject.toml``) is generated
from; every tracer and meter of the hub carries :data:`SCHEMA_URL`. Stable names come from
that package; names still in development there are spelled out here, so that a rename in a
later version is one edit. The hub's own attributes live under ``fbrhub.``. None of them ever
holds personal data: ids, codes, states and counts only (docs/observability.md lists them).
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.44.0"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# RPC (development in v1.44.0).
RPC_SYSTEM_NAME: Final = "rpc.system.name"
RPC_METHOD: Final = "rpc.method"
RPC_METHOD_ORIGINAL: Final = "rpc.method_original"
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"
RPC_SERVER_CALL_DURATION: Final = "rpc.server.call.duration"

# Database (db.system.name is stable; the unit-of-work spans use it with db.namespace).
DB_SYSTEM_NAME: Final = "db.system.name"
DB_NAMESPACE: Final = "db.namespace"

# Messaging (development in v1.44.0): the outbox is a queue named "invoices".
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_BATCH_MESSAGE_COUNT: Final = "messaging.batch.message_count"
MESSAGING_CLIENT_ID: Final = "messaging.client.id"

# The hub's own attributes (span attributes, metric attributes and log fields alike).
TENANT_ID: Final = "fbrhub.tenant_id"
INVOICE_ID: Final = "fbrhub.invoice_id"
ATTEMPT: Final = "fbrhub.attempt"
FBR_ENDPOINT: Final = "fbrhub.fbr.endpoint"
FBR_OUTCOME: Final = "fbrhub.fbr.outcome"
FBR_ERROR_CODE: Final = "fbrhub.fbr.error_code"
ACK_OUTCOME: Final = "fbrhub.ack.outcome"
ERROR_REASON: Final = "fbrhub.error.reason"

# What the outbox looks like as a messaging system.
OUTBOX_SYSTEM: Final = "fbrhub"
OUTBOX_QUEUE: Final = "invoices"
