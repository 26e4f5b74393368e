"""Hub errors as Python values: RPC failures and the per-invoice errors inside acks.

The hub reports every error as a ``google.rpc.Status`` carrying an ``ErrorInfo`` (domain
``fbrhub``, an UPPER_SNAKE reason) and, for problems with specific fields, a ``BadRequest``
whose field violations name the path (``invoices[3].items[2].hs_code``) and, as their reason,
the FBR error code (``FBR_0019``). A failed RPC carries that status in the
``grpc-status-details-bin`` trailer; a rejected invoice carries it in its ack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
FBR_REASON_PREFIX = "FBR_"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One problem with one field of a request.

    Attributes:
        field: the field path, e.g. ``invoices[3].items[2].hs_code``.
        description: what is wrong and what to send instead.
        reason: ``FBR_<code>`` when the problem matches an FBR error code, else a hub reason.
    """

    field: str
    description: str
    reason: str

    @property
    def fbr_error_code(self) -> str:
        """The FBR error code (``"0019"``), or ``""`` when the problem has none."""
        return self.reason.removeprefix(FBR_REASON_PREFIX) if self.is_fbr else ""

    @property
    def is_fbr(self) -> bool:
        """True when the violation corresponds to an FBR error code."""
        return self.reason.startswith(FBR_REASON_PREFIX)


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """The ``ErrorInfo`` of a status (empty values when it has none).

    Attributes:
        reason: UPPER_SNAKE reason, e.g. ``INVOICE_INVALID``.
        domain: the error domain, ``fbrhub`` for the hub's own errors.
        metadata: extra facts, e.g. ``fbrErrorCodes`` (never personal data).
    """

    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def describe_status(status: status_pb2.Status | None) -> list[FieldViolation]:
    """The field violations of a status (from its ``BadRequest`` detail), in order.

    Args:
        status: a status from an ack, a validation result, a record or a result event.

    Returns:
        The violations; an empty list when there are none or ``status`` is None.
    """
    violations: list[FieldViolation] = []
    if status is None:
        return violations
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(
                FieldViolation(v.field, v.description, v.reason)
                for v in bad_request.field_violations
            )
    return violations


def error_details(status: status_pb2.Status | None) -> ErrorDetails:
    """The ``ErrorInfo`` of a status; empty details when it has none."""
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return ErrorDetails(info.reason, info.domain, dict(info.metadata))
    return ErrorDetails()


class HubApiError(Exception):
    """An RPC to the hub failed.

    Attributes:
        code: the gRPC status code.
        message: the status message (safe to show; the hub puts no personal data in it).
        reason: the ``ErrorInfo`` reason, e.g. ``API_KEY_INVALID``; ``""`` if none was sent.
        domain: the ``ErrorInfo`` domain (``fbrhub``); ``""`` if none was sent.
        metadata: the ``ErrorInfo`` metadata.
        field_violations: the ``BadRequest`` violations, if the error names fields.
        status: the full ``google.rpc.Status`` when the server sent one.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        details = error_details(status)
        self.code = code
        self.message = message
        self.reason = details.reason
        self.domain = details.domain
        self.metadata = details.metadata
        self.field_violations = describe_status(status)
        self.status = status

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> HubApiError:
        """Decode a failed call (``grpc.aio`` or sync), including its rich status trailer.

        A trailer whose code disagrees with the call's code is ignored, as
        ``grpc_status.rpc_status.from_call`` would refuse it.
        """
        code, message, trailers = grpc.StatusCode.UNKNOWN, str(error), None
        # AioRpcError is not a grpc.Call, but it answers the same three questions.
        if isinstance(error, grpc.aio.AioRpcError | grpc.Call):
            code, message, trailers = error.code(), error.details() or "", error.trailing_metadata()
        status = None
        for key, value in trailers or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                candidate = status_pb2.Status.FromString(value)
                if candidate.code == code.value[0]:
                    status = candidate
                break
        return cls(code, message, status=status)
