"""Hub errors as Python values: failed calls as typed exceptions, per-invoice errors decoded.

The hub reports every error as a ``google.rpc.Status`` carrying an ``ErrorInfo`` (domain
``fbrhub``, a reason named by :class:`fbrhub.v1.error_reason_pb2.ErrorReason`) and, for
problems with specific fields, a ``BadRequest`` whose field violations name the path
(``invoices[3].items[2].hs_code``) and, as their reason, the FBR error code (``FBR_0019``).
A failed RPC carries that status in the ``grpc-status-details-bin`` trailer and raises one
of the :class:`HubApiError` subclasses below, chosen by reason family (then by status code
when the reason is unknown); a rejected invoice carries the status in its ack or result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

from fbrhub.v1 import error_reason_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "fbrhub"
FBR_REASON_PREFIX = "FBR_"

ErrorReason = error_reason_pb2.ErrorReason
"""The enum of published reasons (``ErrorReason.Name(value)`` is the text the hub sends)."""


def reason_value(reason: str) -> error_reason_pb2.ErrorReason.ValueType:
    """The :data:`ErrorReason` value of a reason text; UNSPECIFIED for an unknown one.

    Unknown texts are expected: newer hubs may add reasons, and FBR codes the hub does not
    know yet pass through as ``FBR_<code>``.
    """
    try:
        return ErrorReason.Value(reason)
    except ValueError:
        return error_reason_pb2.ERROR_REASON_UNSPECIFIED


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field of a request or an invoice.

    Attributes:
        field: the field path, e.g. ``invoices[3].items[2].hs_code``.
        description: what is wrong and what to send instead.
        reason: ``FBR_<code>`` when the problem matches an FBR error code, else a hub
            reason such as ``INVALID_VALUE``.
    """

    field: str
    description: str
    reason: str

    @property
    def fbr_error_code(self) -> str:
        """The FBR error code (``"0019"``), or ``""`` when the problem has none."""
        return self.reason[len(FBR_REASON_PREFIX) :] if self.is_fbr else ""

    @property
    def is_fbr(self) -> bool:
        """True when the violation corresponds to an FBR error code."""
        return self.reason.startswith(FBR_REASON_PREFIX)


@dataclass(frozen=True)
class ErrorDetails:
    """The ``ErrorInfo`` of a status (empty values when it has none).

    Attributes:
        reason: the reason text, e.g. ``INVOICE_INVALID``.
        domain: the error domain, ``fbrhub`` for the hub's own errors.
        metadata: extra facts, e.g. ``fbrErrorCodes`` (never personal data).
    """

    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def reason_value(self) -> error_reason_pb2.ErrorReason.ValueType:
        """The reason as an :data:`ErrorReason` value (UNSPECIFIED if unknown)."""
        return reason_value(self.reason)


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
    """A call to the hub failed. Catch a subclass to handle one family of reasons.

    Attributes:
        code: the gRPC status code.
        message: the status message (safe to show; the hub puts no personal data in it).
        reason: the ``ErrorInfo`` reason text, e.g. ``API_KEY_INVALID``; ``""`` if none.
        domain: the ``ErrorInfo`` domain (``fbrhub``); ``""`` if none was sent.
        metadata: the ``ErrorInfo`` metadata.
        field_violations: the ``BadRequest`` violations, if the error names fields.
        status: the full ``google.rpc.Status`` when the server sent one.
    """

    retryable = False
    """Whether the same call may succeed if made again later, unchanged."""

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

    @property
    def reason_value(self) -> error_reason_pb2.ErrorReason.ValueType:
        """The reason as an :data:`ErrorReason` value (UNSPECIFIED if unknown or absent)."""
        return reason_value(self.reason)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> HubApiError:
        """Decode a failed call (``grpc.aio`` or sync) into the matching subclass.

        A status trailer whose code disagrees with the call's code is ignored, as
        ``grpc_status.rpc_status.from_call`` would refuse it.
        """
        code, message, trailers = grpc.StatusCode.UNKNOWN, str(error), None
        # AioRpcError is not a grpc.Call, but it answers the same three questions.
        if isinstance(error, (grpc.aio.AioRpcError, grpc.Call)):
            code, message, trailers = error.code(), error.details() or "", error.trailing_metadata()
        status = None
        for key, value in trailers or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                candidate = status_pb2.Status.FromString(value)
                if candidate.code == code.value[0]:
                    status = candidate
                break
        return error_class(code, error_details(status).reason)(code, message, status=status)


class InvalidArgumentError(HubApiError):
    """The request is wrong: a field value, a cursor, a page token, a too-large batch.

    Sending the same request again fails again; ``field_violations`` say what to fix.
    """


class InvoiceInvalidError(InvalidArgumentError):
    """An invoice (a correction, a retry) failed validation (``INVOICE_INVALID``)."""


class CursorInvalidError(InvalidArgumentError):
    """A results or audit cursor is not valid for this key (``CURSOR_INVALID``).

    A saved cursor from another tenant, or a corrupted one: reset the cursor store.
    """


class AuthenticationError(HubApiError):
    """No valid API key (``API_KEY_INVALID``): missing, unknown, revoked or wrong."""


class PermissionDeniedError(HubApiError):
    """The API key's role may not call this method (``ROLE_NOT_ALLOWED``)."""


class NotFoundError(HubApiError):
    """No such invoice (or other resource) for this tenant (``NOT_FOUND``)."""


class ConflictError(HubApiError):
    """The resource is not in a state the call applies to, or already exists.

    ``INVOICE_STATE_CONFLICT``, ``INVOICE_NOT_ACCEPTED``, ``USERNAME_TAKEN`` and the
    account reasons; ``metadata`` names the expected and actual states where it applies.
    """


class UnavailableError(HubApiError):
    """The hub could not be reached or is shutting down; the call may succeed later."""

    retryable = True


class DeadlineExceededError(UnavailableError):
    """The call's deadline passed before the hub answered; it may or may not have acted."""


class ResourceExhaustedError(UnavailableError):
    """The hub or the channel refused the call for now (a message or rate limit)."""


class InternalError(HubApiError):
    """The hub failed unexpectedly (``INTERNAL``); its log has the details by trace id."""


class ProtocolError(HubApiError):
    """The hub answered in a way the SDK does not expect (e.g. acks not matching a batch)."""


_REASON_CLASSES: dict[str, type[HubApiError]] = {
    "INVOICE_INVALID": InvoiceInvalidError,
    "CURSOR_INVALID": CursorInvalidError,
    "API_KEY_INVALID": AuthenticationError,
    "ROLE_NOT_ALLOWED": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "INTERNAL": InternalError,
}
# Reason families by ErrorReason number (error_reason.proto: 100-199 the request, 300-399 the
# caller, 400-499 the resource's state), for reasons without a class of their own.
_FAMILY_CLASSES: tuple[tuple[range, type[HubApiError]], ...] = (
    (range(100, 200), InvalidArgumentError),
    (range(300, 400), AuthenticationError),
    (range(400, 500), ConflictError),
)
_CODE_CLASSES: dict[grpc.StatusCode, type[HubApiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: ConflictError,
    grpc.StatusCode.FAILED_PRECONDITION: ConflictError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
}


def error_class(code: grpc.StatusCode, reason: str) -> type[HubApiError]:
    """The exception class for a failed call: by reason first, then by status code.

    Args:
        code: the call's status code.
        reason: the ``ErrorInfo`` reason text ("" when the status carried none).
    """
    by_reason = _REASON_CLASSES.get(reason)
    if by_reason is not None:
        return by_reason
    number = reason_value(reason)
    for numbers, cls in _FAMILY_CLASSES:
        if number in numbers:
            # The family decides unless the code says otherwise (PERMISSION_DENIED).
            return _CODE_CLASSES.get(code, cls) if cls is AuthenticationError else cls
    return _CODE_CLASSES.get(code, InternalError)
