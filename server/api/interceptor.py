"""The hub's server interceptor: authentication, tenant scoping and error mapping.

Every RPC except health and reflection needs ``authorization: Bearer <api key>``. The
interceptor wraps each method handler so that, around the servicer code, it:

1. adds the tenant id and the error reason to the call's span (opened by
   :class:`server.api.telemetry.TelemetryInterceptor`, which runs first; never personal data);
2. rejects calls without a valid key with UNAUTHENTICATED, then calls whose key's role may
   not call the method (``server.api.authz.RPC_ROLES``) with PERMISSION_DENIED, auditing both,
   before any servicer code runs (so PERMISSION_DENIED always comes before NOT_FOUND); an
   address that failed too often lately is refused with RESOURCE_EXHAUSTED without a
   database read (:mod:`server.access.failures`);
3. makes the caller available to the servicer through :func:`current_caller`;
4. refuses a request holding text no database can store (NUL, invalid UTF-8) with
   INVALID_ARGUMENT per field, and one that is not protobuf at all (:mod:`server.api.text`,
   :mod:`server.api.decoding`);
5. turns a :class:`~server.api.errors.HubError` into its status, and anything unexpected into
   a bare INTERNAL (the details go to the log, keyed by trace id, never to the client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any

import grpc
from grpc_status import rpc_status
from opentelemetry import trace

from server.access.api_keys import ApiKeyVerifier, Caller, parse_api_key
from server.access.failures import FailureLimiter, peer_host
from server.api.authz import is_allowed
from server.api.decoding import Undecodable, lenient
from server.api.errors import error_status
from server.api.text import refuse_unstorable_text
from server.audit.access import AccessAuditor
from server.errors import (
    HubError,
    PermissionDenied,
    RequestUndecodable,
    TooManyAuthFailures,
    Unauthenticated,
)
from server.observability.semconv import ERROR_REASON, TENANT_ID

logger = logging.getLogger(__name__)
_caller: ContextVar[Caller | None] = ContextVar("fbrhub_caller", default=None)


def current_caller() -> Caller:
    """The authenticated caller of the RPC being served."""
    caller = _caller.get()
    if caller is None:  # the interceptor guarantees this never happens in a servicer
        raise RuntimeError("no authenticated caller in this context")
    return caller


def _bearer_token(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class _Call:
    """What the wrapper needs to know about one RPC."""

    def __init__(self, method: str, caller: Caller | None) -> None:
        self.method = method
        self.caller = caller
        # The server span of the call (or a no-op span when the call is not traced).
        self.span = trace.get_current_span()
        if caller is not None:
            self.span.set_attribute(TENANT_ID, str(caller.tenant_id))

    async def fail(
        self, context: grpc.aio.ServicerContext[Any, Any], error: HubError | None
    ) -> None:
        """End the call with the status of ``error`` (INTERNAL when None)."""
        status = error_status(error)
        # The status code itself is recorded by the telemetry interceptor.
        self.span.set_attribute(ERROR_REASON, error.reason if error else "INTERNAL")
        await context.abort_with_status(rpc_status.to_status(status))

    async def handle(self, context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if isinstance(exc, HubError):
            await self.fail(context, exc)
            return
        logger.exception(
            "unexpected error in %s", self.method, extra={"rpc_method": self.method.lstrip("/")}
        )
        # The class only: a message or a traceback can quote what the caller sent.
        self.span.add_event("exception", {"exception.type": type(exc).__name__})
        await self.fail(context, None)


class HubInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, scopes, traces and maps errors for every hub RPC."""

    def __init__(
        self,
        verifier: ApiKeyVerifier,
        *,
        public_services: frozenset[str],
        auditor: AccessAuditor | None = None,
        failures: FailureLimiter | None = None,
    ) -> None:
        self._verifier = verifier
        self._public_services = public_services
        self._auditor = auditor
        self._failures = failures or FailureLimiter(0, 60.0)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        service = method.split("/")[1] if method.count("/") == 2 else method
        if handler is None or service in self._public_services:
            return handler
        token = _bearer_token(handler_call_details.invocation_metadata)
        return _wrap(handler, method, partial(self._authenticate, method, token))

    async def _authenticate(
        self, method: str, token: str | None, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Caller | None, _Refusal | None]:
        """The caller of an RPC, or why it is refused (the peer is known only in the call)."""
        now = time.monotonic()
        peer = peer_host(context.peer() or "")
        if self._failures.blocked(peer, now):
            # Only a key verified moments ago gets through: no database work for the rest.
            caller = self._verifier.cached(token, now) if token else None
            if caller is None:
                await self._count_failure(method, token)
                return None, _Refusal(
                    TooManyAuthFailures(
                        "too many failed authentications from this address; try again later"
                    ),
                    None,
                )
        else:
            caller = await self._verifier.verify(token, now) if token else None
        if caller is None:
            self._failures.failed(peer, now)
        return caller, self._refusal(method, token, caller)

    async def _count_failure(self, method: str, token: str | None) -> None:
        if self._auditor is not None:
            parsed = parse_api_key(token) if token else None
            await self._auditor.unauthenticated(method, parsed[0] if parsed else None)

    def _refusal(self, method: str, token: str | None, caller: Caller | None) -> _Refusal | None:
        auditor = self._auditor
        if caller is None:
            return _Refusal(
                Unauthenticated("a valid API key is required"),
                partial(self._count_failure, method, token),
            )
        if not is_allowed(method, caller.role):
            return _Refusal(
                PermissionDenied("this API key's role may not call this method"),
                partial(
                    auditor.permission_denied, method, caller.tenant_id, caller.key_id, caller.role
                )
                if auditor
                else None,
            )
        return None


class _Refusal:
    """Why a call is refused before it reaches the servicer, and how to audit that."""

    def __init__(self, error: HubError, audit: Callable[[], Awaitable[None]] | None) -> None:
        self.error = error
        self._audit = audit

    async def refuse(self, call: _Call, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self._audit is not None:
            try:
                await self._audit()
            except Exception:  # auditing must not turn a refusal into INTERNAL
                logger.exception("could not audit a refused call to %s", call.method)
        await call.fail(context, self.error)


def _screen(request: Any) -> None:
    """Refuse a request that did not decode, or holds text no database can store."""
    if isinstance(request, Undecodable):
        raise RequestUndecodable("request", "the request is not a valid protobuf message")
    refuse_unstorable_text(request)


async def _screened(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The messages of a request stream, each screened as it is read."""
    async for request in requests:
        _screen(request)
        yield request


Authenticate = Callable[
    [grpc.aio.ServicerContext[Any, Any]], Awaitable[tuple[Caller | None, "_Refusal | None"]]
]


def _wrap(handler: Any, method: str, authenticate: Authenticate) -> Any:
    deserializer = lenient(handler.request_deserializer)
    if handler.unary_unary or handler.stream_unary:
        inner_unary = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            caller, refusal = await authenticate(context)
            call = _Call(method, caller)
            if refusal is not None:
                await refusal.refuse(call, context)
            # Each RPC runs in its own task, so setting the variable scopes it to the call.
            _caller.set(caller)
            try:
                if handler.unary_unary:
                    _screen(request)
                else:
                    request = _screened(request)
                return await inner_unary(request, context)
            except Exception as exc:
                await call.handle(context, exc)

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            unary,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )

    inner_stream = handler.unary_stream or handler.stream_stream

    async def streaming(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        caller, refusal = await authenticate(context)
        call = _Call(method, caller)
        if refusal is not None:
            await refusal.refuse(call, context)
        _caller.set(caller)
        try:
            if handler.unary_stream:
                _screen(request)
            else:
                request = _screened(request)
            async for response in inner_stream(request, context):
                yield response
        except Exception as exc:
            await call.handle(context, exc)

    factory = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(
        streaming,
        request_deserializer=deserializer,
        response_serializer=handler.response_serializer,
    )
