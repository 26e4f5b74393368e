"""Who may call what: the one table of roles per RPC, enforced by the interceptor.

A method missing from the table is refused for every role (fail closed); a test checks that
every method of every service the hub serves is in the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.descriptor import ServiceDescriptor

from fbrhub.v1 import (
    admin_service_pb2,
    audit_service_pb2,
    invoice_service_pb2,
    privacy_service_pb2,
)
from server.access.roles import Role

INVOICE_SERVICE = invoice_service_pb2.DESCRIPTOR.services_by_name["InvoiceService"]
PRIVACY_SERVICE = privacy_service_pb2.DESCRIPTOR.services_by_name["PrivacyService"]
AUDIT_SERVICE = audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"]
ADMIN_SERVICE = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"]


def _every_method(service: ServiceDescriptor, *roles: Role) -> dict[str, frozenset[Role]]:
    return {f"/{service.full_name}/{m.name}": frozenset(roles) for m in service.methods}


# Full gRPC method name -> roles allowed to call it. Per-RPC exceptions go after the
# service-wide entries (a later key overrides an earlier one).
RPC_ROLES: Mapping[str, frozenset[Role]] = {
    **_every_method(INVOICE_SERVICE, Role.ERP, Role.ADMIN),
    **_every_method(PRIVACY_SERVICE, Role.PRIVACY_OFFICER),
    **_every_method(AUDIT_SERVICE, Role.AUDITOR, Role.ADMIN),
    **_every_method(ADMIN_SERVICE, Role.ADMIN),
}

HUB_SERVICES = (INVOICE_SERVICE, PRIVACY_SERVICE, AUDIT_SERVICE, ADMIN_SERVICE)


def is_allowed(method: str, role: Role) -> bool:
    """True if a key with ``role`` may call ``method`` (``/package.Service/Method``)."""
    return role in RPC_ROLES.get(method, frozenset())


def hub_methods(services: Iterable[ServiceDescriptor] = HUB_SERVICES) -> list[str]:
    """Every full method name of the given services."""
    return [f"/{s.full_name}/{m.name}" for s in services for m in s.methods]
