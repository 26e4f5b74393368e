"""The errors the hub's domain raises, free of any transport.

Each class names what went wrong in the domain's terms, carries typed attributes and a stable
UPPER_SNAKE ``reason`` (the ``ErrorInfo`` reason clients branch on, and the outcome the audit
trail records); the API edge (:mod:`server.api.errors`) maps each class to a status code in
one table, so the domain never decides how an error travels. Messages are
safe to show to the caller: they name fields and states, never the values sent (an NTN, a
name), because error details end up in client logs. A problem with one field is the FBR rule
table's own :class:`~clients.fbr.rules.Violation` (path, FBR code if any, message), whether
a rule or the hub found it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from clients.fbr.rules import Violation


class HubError(Exception):
    """Base of every error a caller may see; ``str(error)`` is safe to show.

    Attributes:
        reason: UPPER_SNAKE reason of the class, e.g. ``NOT_FOUND``.
    """

    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def metadata(self) -> Mapping[str, str]:
        """Facts for the ``ErrorInfo`` metadata (ids, states, field names; no personal data)."""
        return {}

    @property
    def problems(self) -> tuple[Violation, ...]:
        """The fields at fault, if the error is about specific fields."""
        return ()


# --- the request itself is wrong --------------------------------------------------------------


class InvalidField(HubError):
    """A field of the request has a value the hub cannot take.

    Attributes:
        path: the field path, e.g. ``corrections[0].value``.
    """

    reason = "INVALID_ARGUMENT"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"field": self.path}

    @property
    def problems(self) -> tuple[Violation, ...]:
        return (Violation(self.path, "", self.message),)


class TextNotStorable(InvalidField):
    """Text fields hold a NUL or invalid UTF-8, which no database column can store.

    Attributes:
        violations: one per field at fault (the first is also ``path``).
    """

    reason = "TEXT_NOT_STORABLE"

    def __init__(self, violations: tuple[Violation, ...]) -> None:
        super().__init__(
            violations[0].path if violations else "",
            "text fields must be valid UTF-8 without NUL characters",
        )
        self.violations = violations

    @property
    def problems(self) -> tuple[Violation, ...]:
        return self.violations


class RequestUndecodable(InvalidField):
    """The request bytes are not a protobuf message of the method's request type."""

    reason = "REQUEST_UNDECODABLE"


class FieldTooLong(InvalidField):
    """A text field is longer than its limit."""

    reason = "FIELD_TOO_LONG"


class BatchTooLarge(InvalidField):
    """A request carries more invoices than one request may."""

    reason = "BATCH_TOO_LARGE"


class CursorInvalid(InvalidField):
    """A stream cursor is malformed, forged, or another tenant's."""

    reason = "CURSOR_INVALID"


class PageTokenInvalid(InvalidField):
    """A page token is malformed, forged, another tenant's, or made for other filters."""

    reason = "PAGE_TOKEN_INVALID"


class FieldNotCorrectable(InvalidField):
    """A correction names a field that cannot be corrected."""

    reason = "FIELD_NOT_CORRECTABLE"


class RequestIdReused(InvalidField):
    """A request id was already used for another request."""

    reason = "REQUEST_ID_REUSED"


class InvalidInvoice(HubError):
    """An invoice (e.g. an operator's correction) breaks validation rules.

    Attributes:
        violations: every problem found, paths relative to the request.
    """

    reason = "INVOICE_INVALID"

    def __init__(self, message: str, violations: tuple[Violation, ...]) -> None:
        super().__init__(message)
        self.violations = violations

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"violationCount": str(len(self.violations))}

    @property
    def problems(self) -> tuple[Violation, ...]:
        return self.violations

    def within(self, prefix: str) -> InvalidInvoice:
        """The same error with every path under ``prefix`` (``corrected_invoice.items[0]``)."""
        return InvalidInvoice(
            self.message,
            tuple(
                Violation(f"{prefix}.{v.path}", v.fbr_error_code, v.message)
                for v in self.violations
            ),
        )


# --- who is calling ----------------------------------------------------------------------------


class Unauthenticated(HubError):
    """No valid API key: missing, malformed, unknown, revoked or with a wrong secret."""

    reason = "API_KEY_INVALID"


class TooManyAuthFailures(HubError):
    """The caller's address failed authentication too often lately; it must wait."""

    reason = "AUTH_FAILURES_EXCEEDED"


class PermissionDenied(HubError):
    """The API key is valid but its role may not call this method."""

    reason = "ROLE_NOT_ALLOWED"


# --- what the request is about ----------------------------------------------------------------


class NotFound(HubError):
    """No such resource for this tenant; identical whether missing or another tenant's.

    Attributes:
        resource: the kind of resource, e.g. ``invoice``.
    """

    reason = "NOT_FOUND"

    def __init__(self, resource: str) -> None:
        super().__init__(f"{resource} not found")
        self.resource = resource

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"resourceType": self.resource}


class UsernameTaken(HubError):
    """An account with this username already exists in the tenant."""

    reason = "USERNAME_TAKEN"

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"field": "username"}


class InvoiceStateConflict(HubError):
    """The invoice is not in the state the operation applies to.

    Attributes:
        expected: the state the operation needs.
        actual: the state the invoice is in (or ``changed meanwhile``).
    """

    reason = "INVOICE_STATE_CONFLICT"

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the invoice is {actual}, not {expected}")
        self.expected = expected
        self.actual = actual

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"expectedState": self.expected, "actualState": self.actual}


class InvoiceNotAccepted(HubError):
    """Print data was asked for an invoice FBR has not accepted.

    Attributes:
        actual: the invoice's state.
    """

    reason = "INVOICE_NOT_ACCEPTED"

    def __init__(self, actual: str) -> None:
        super().__init__("print data exists only once FBR has accepted the invoice")
        self.actual = actual

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"actualState": self.actual}


class AccountNotActive(HubError):
    """The account is closed or anonymised, and the operation needs an active one."""

    reason = "ACCOUNT_NOT_ACTIVE"


class AccountAnonymised(HubError):
    """The account has been anonymised: nothing of it can be corrected."""

    reason = "ACCOUNT_ANONYMISED"


class ApiKeyRevoked(HubError):
    """The API key is already revoked."""

    reason = "API_KEY_REVOKED"
