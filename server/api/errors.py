"""Errors at the API edge: the one table from domain errors to ``google.rpc.Status``.

Every error a client sees is built here, so that the status code, the message and the
``grpc-status-details-bin`` trailer always agree (``rpc_status.from_call`` refuses them
otherwise). Each status carries an ``ErrorInfo`` (domain ``fbrhub``, an UPPER_SNAKE reason)
and, for errors about specific fields, a ``BadRequest`` with one violation per field.
Messages and metadata never carry personal data: they name fields, never values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from clients.fbr.rules import Violation
from server import errors
from server.errors import HubError

ERROR_DOMAIN = "fbrhub"

# Domain error -> status code. A class not listed takes its nearest listed base's code; a
# test checks that every domain error class resolves to a code other than INTERNAL.
STATUS_CODES: Mapping[type[HubError], grpc.StatusCode] = {
    errors.InvalidField: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidInvoice: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.TooManyAuthFailures: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.UsernameTaken: grpc.StatusCode.ALREADY_EXISTS,
    errors.InvoiceStateConflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvoiceNotAccepted: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AccountNotActive: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AccountAnonymised: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ApiKeyRevoked: grpc.StatusCode.FAILED_PRECONDITION,
}


def status_code(error: HubError) -> grpc.StatusCode:
    """The status code of a domain error: that of its nearest listed class."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def error_status(error: HubError | None) -> status_pb2.Status:
    """The ``google.rpc.Status`` a domain error ends an RPC with; None is a bare INTERNAL.

    An unexpected exception is never described to the client: its details stay in the
    server log, keyed by trace id.
    """
    if error is None:
        return build_status(grpc.StatusCode.INTERNAL, "internal error", reason="INTERNAL")
    return build_status(
        status_code(error),
        error.message,
        reason=error.reason,
        metadata=error.metadata,
        problems=error.problems,
    )


def violation_reason(violation: Violation) -> str:
    """The reason of a field violation: ``FBR_<code>`` for an FBR rule, else ``INVALID_VALUE``."""
    return f"FBR_{violation.fbr_error_code}" if violation.fbr_error_code else "INVALID_VALUE"


def build_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    metadata: Mapping[str, str] | None = None,
    problems: Sequence[Violation] = (),
) -> status_pb2.Status:
    """Build a ``google.rpc.Status`` with an ``ErrorInfo`` and, if given, a ``BadRequest``."""
    status = status_pb2.Status(code=code.value[0], message=message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    status.details.append(info)
    if problems:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.path, description=v.message, reason=violation_reason(v)
                )
                for v in problems
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return status
