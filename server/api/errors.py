"""The hub's errors and the one helper that turns them into ``google.rpc.Status``.

Every error a client sees is built here, so that the status code, the message and the
``grpc-status-details-bin`` trailer always agree (``rpc_status.from_call`` refuses them
otherwise). Messages and metadata never carry personal data: they name fields, never values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "fbrhub"


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field.

    Attributes:
        path: field path, e.g. ``invoices[3].items[2].hs_code``.
        message: what is wrong and what to send instead, in plain words.
        fbr_error_code: the FBR error code the problem corresponds to ("" if none).
    """

    path: str
    message: str
    fbr_error_code: str = ""

    @property
    def reason(self) -> str:
        """The UPPER_SNAKE reason carried in the field violation."""
        return f"FBR_{self.fbr_error_code}" if self.fbr_error_code else "INVALID_VALUE"


def build_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    metadata: Mapping[str, str] | None = None,
    problems: Sequence[FieldProblem] = (),
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
                    field=p.path, description=p.message, reason=p.reason
                )
                for p in problems
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return status


class HubError(Exception):
    """An error that ends an RPC with a well-formed status.

    Attributes:
        code: the gRPC status code.
        reason: the ErrorInfo reason (UPPER_SNAKE).
        message: a message safe to show to the caller.
        metadata: ErrorInfo metadata (no personal data).
        problems: field violations, if the error is about specific fields.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        problems: Sequence[FieldProblem] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.problems = tuple(problems)

    def to_status(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` for this error."""
        return build_status(
            self.code,
            self.message,
            reason=self.reason,
            metadata=self.metadata,
            problems=self.problems,
        )


def invalid_argument(path: str, message: str, reason: str = "INVALID_ARGUMENT") -> HubError:
    """An INVALID_ARGUMENT error about one request field."""
    return HubError(
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        message,
        metadata={"field": path},
        problems=[FieldProblem(path=path, message=message)],
    )


def not_found(resource: str) -> HubError:
    """A NOT_FOUND error; identical whether the resource is missing or another tenant's."""
    return HubError(
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
        f"{resource} not found",
        metadata={"resourceType": resource},
    )


def unauthenticated(message: str) -> HubError:
    """An UNAUTHENTICATED error (missing, malformed, unknown or revoked API key)."""
    return HubError(grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID", message)


def internal_error() -> HubError:
    """The generic INTERNAL error; details stay in the server log, keyed by trace id."""
    return HubError(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")
