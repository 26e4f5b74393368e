"""The simulator's security tokens: who each belongs to, where it is valid, until when.

FBR's gateway (WSO2) answers 401 with fault 900902 when no token is sent and 900901 for an
unknown, revoked, expired or other-environment token; :meth:`TokenBook.authenticate` gives
the same answers.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from aiohttp import web

from clients.fbr_simulator import faults

ENVIRONMENTS = frozenset({"sandbox", "production"})


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """Whom a security token belongs to and where it is valid."""

    seller_ntn_cnic: str
    environment: str = "sandbox"
    """``"sandbox"`` or ``"production"``."""
    scenarios: frozenset[str] | None = None
    """Sandbox scenarios assigned to the seller; None: all of SN001-SN028."""
    expires_at: datetime.datetime | None = None
    """When the token stops working (simulator clock; naive means UTC); None: never."""


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


class TokenBook:
    """The tokens the simulator knows, judged by the simulator's clock."""

    def __init__(
        self, grants: Mapping[str, TokenGrant], clock: Callable[[], datetime.datetime]
    ) -> None:
        self._grants = dict(grants)
        self._clock = clock

    def __contains__(self, token: object) -> bool:
        return token in self._grants

    def __len__(self) -> int:
        return len(self._grants)

    def __getitem__(self, token: str) -> TokenGrant:
        return self._grants[token]

    def __setitem__(self, token: str, grant: TokenGrant) -> None:
        """Grant ``token`` as given (e.g. with assigned scenarios)."""
        self._grants[token] = grant

    def get(self, token: str) -> TokenGrant | None:
        """The grant of ``token``, if it was ever granted and not revoked."""
        return self._grants.get(token)

    def add(
        self,
        token: str,
        seller_ntn_cnic: str,
        environment: str = "sandbox",
        *,
        expires_at: datetime.datetime | None = None,
    ) -> None:
        """Grant ``token`` to a seller (replacing any grant it had).

        Raises:
            ValueError: for an environment other than sandbox or production.
        """
        if environment not in ENVIRONMENTS:
            raise ValueError(f"unknown environment {environment!r}")
        self._grants[token] = TokenGrant(seller_ntn_cnic, environment, expires_at=expires_at)

    def revoke(self, token: str) -> None:
        """Forget ``token``: from now on it gets WSO2's 401 900901."""
        self._grants.pop(token, None)

    def expire(self, token: str, at: datetime.datetime | None = None) -> None:
        """Make ``token`` expire at ``at`` (default: now, by the simulator's clock).

        Raises:
            KeyError: if the token is unknown.
        """
        self._grants[token] = replace(self._grants[token], expires_at=at or self._clock())

    def rotate(self, old: str, new: str, *, expires_at: datetime.datetime | None = None) -> None:
        """Replace ``old`` by ``new`` for the same seller: ``old`` gets 401 from now on.

        Raises:
            KeyError: if ``old`` is unknown.
        """
        self._grants[new] = replace(self._grants.pop(old), expires_at=expires_at)

    def authenticate(
        self, request: web.Request, environment: str | None
    ) -> TokenGrant | web.Response:
        """The token's grant, or WSO2's 401 (also for a token of the other environment).

        Args:
            environment: where the endpoint lives; None accepts either.
        """
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return faults.missing_credentials()
        grant = self._grants.get(token)
        if grant is None or (environment is not None and grant.environment != environment):
            return faults.invalid_credentials()
        if grant.expires_at is not None and self._clock() >= _aware(grant.expires_at):
            return faults.invalid_credentials()  # WSO2 says the same for an expired token
        return grant
