"""Property-based: generated requests for every RPC never reach INTERNAL or UNKNOWN.

Requests are generated from the proto descriptors (``tests/hostile/generated.py``) with the
values that broke the hub before, sent as raw bytes by a real client to a real hub on each
database, with a key of a role allowed to call the RPC. After every example the hub must
still answer its health check, and the other tenant's data must be untouched.

Hypothesis runs with a derandomised seed per test (``derandomize=True``) and no example
database, so CI runs the same examples every time; ``max_examples`` keeps the suite to a
few minutes per database.

The tests are synchronous and run the hub on an event loop of their own: Hypothesis calls
the test body once per example, and each example drives that loop to completion.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from fbrhub.v1 import invoice_service_pb2
from server.access.accounts import create_account
from server.access.actor import SETUP
from server.access.api_keys import create_api_key
from server.access.roles import Role
from server.access.tenants import load_tenant
from server.api.authz import HUB_SERVICES, RPC_ROLES
from server.app import Hub, start_hub
from server.db.engine import Database
from server.db.models import AuditEvent, Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.intake import Ingestor
from server.invoices.model import SubmittedInvoice
from server.privacy.subjects import ACCOUNT_FIELDS, BUYER_FIELDS
from tests.conftest import (
    OTHER_NTN,
    OTHER_TOKEN,
    RoleKeys,
    hub_settings,
    make_role_keys,
    make_tenant,
)
from tests.helpers import proto_invoice, sample
from tests.hostile.generated import (
    hostile_invoice,
    messages,
    mutated,
    twin_of,
    unique_reference,
)

FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
METHODS = [m for service in HUB_SERVICES for m in service.methods]
# Streams that follow (or wait) are read for this long, then cancelled.
READ_SECONDS = 0.3
EXAMPLES_PER_RPC = 200
SETTINGS = settings(
    max_examples=EXAMPLES_PER_RPC,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class World:
    """A hub on its own loop, a client channel, and two tenants (one attacked, one watched)."""

    loop: asyncio.AbstractEventLoop
    hub: Hub
    channel: grpc.aio.Channel
    keys: RoleKeys
    other: uuid.UUID
    known: dict[str, list[str]]

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)


BUYER = "3740512345671"


async def _existing(db: Database, tenant_id: uuid.UUID) -> dict[str, list[str]]:
    """Things that exist in the attacked tenant: an account, invoices in several states, keys
    no test call uses (so rotating or revoking them leaves the test its keys)."""
    profile = await load_tenant(db, tenant_id)
    assert profile is not None
    account_id = await create_account(
        db, tenant_id, username="target", full_name="Target", email="t@example.pk",
        phone="", password="target password 1", role=Role.ERP, consents=[("marketing", True)],
        bcrypt_rounds=4, actor=SETUP,
    )  # fmt: skip
    references = [f"KNOWN-{state.value}" for state in _STATES]
    invoices = []
    for reference in references:
        invoice = sample(reference)
        invoice.update(buyer_ntn_cnic=BUYER, buyer_registration_type="Registered")
        invoices.append(SubmittedInvoice.from_normalised(invoice))
    acks = await Ingestor(db, Notifier()).submit(profile, invoices)
    ids = [ack.invoice_id for ack in acks if ack.invoice_id is not None]
    async with db.write("test.states") as session:
        for invoice_id, state in zip(ids, _STATES, strict=True):
            number = f"{profile.seller_ntn_cnic}DI{invoice_id.int % 10**13:013d}"
            await session.execute(
                update(Invoice)
                .where(Invoice.id == invoice_id)
                .values(state=state.value, fbr_invoice_number=number, fbr_dated="2025-01-01")
            )
    spare = [
        (await create_api_key(db, tenant_id, role="erp", name=f"spare {i}"))[0].key_id
        for i in range(3)
    ]
    return {
        "account_id": [str(account_id)],
        "buyer_ntn_cnic": [BUYER],
        "invoice_id": [str(i) for i in ids],
        "erp_reference": references,
        "key_id": spare,
        "fbr_invoice_number": [f"{profile.seller_ntn_cnic}DI{1:013d}"],
        "field": [*ACCOUNT_FIELDS, *BUYER_FIELDS],
    }


_STATES = (InvoiceState.ACCEPTED, InvoiceState.IN_DOUBT, InvoiceState.REJECTED_FBR)


@contextmanager
def world(database_url: str) -> Iterator[World]:
    loop = asyncio.new_event_loop()
    db = Database(database_url)

    async def start() -> World:
        tenant = await make_tenant(db, "8885801", "sandbox-token-8885801")
        other = await make_tenant(db, OTHER_NTN, OTHER_TOKEN)
        keys = await make_role_keys(db, tenant.id)
        keys.keys[Role.ERP] = tenant.api_key
        known = await _existing(db, tenant.id)
        settings_ = hub_settings(
            database_url,
            "http://127.0.0.1:9",
            forwarder_enabled=False,
            retention_sweeper_enabled=False,
            password_bcrypt_rounds=4,
        )
        hub = await start_hub(settings_, db=Database(database_url))
        channel = grpc.aio.insecure_channel(hub.address)
        return World(loop, hub, channel, keys, other.id, known)

    running = loop.run_until_complete(start())
    try:
        yield running
    finally:

        async def stop() -> None:
            await running.channel.close()
            await running.hub.stop(grace=1.0)
            await db.dispose()

        loop.run_until_complete(stop())
        loop.close()


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _role(method: MethodDescriptor) -> str:
    return sorted(RPC_ROLES[_path(method)])[0].value


async def _call(w: World, method: MethodDescriptor, raw: list[bytes]) -> grpc.StatusCode:
    """Send raw request bytes to ``method``; the final status (streams read briefly)."""
    response = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": lambda data: data,
        "response_deserializer": response.FromString,
    }
    metadata = w.keys.metadata(_role(method))
    path = _path(method)
    try:
        if method.client_streaming:
            call = w.channel.stream_stream(path, **kwargs)(iter(raw), metadata=metadata, timeout=30)
        elif method.server_streaming:
            call = w.channel.unary_stream(path, **kwargs)(raw[0], metadata=metadata, timeout=30)
        else:
            await w.channel.unary_unary(path, **kwargs)(raw[0], metadata=metadata, timeout=30)
            return grpc.StatusCode.OK
        try:
            async with asyncio.timeout(READ_SECONDS):
                async for _ in call:
                    pass
        except TimeoutError:
            call.cancel()  # a follower with nothing more to say: fine
            return grpc.StatusCode.OK
        return await call.code()
    except grpc.aio.AioRpcError as error:
        return error.code()


async def _healthy(w: World) -> bool:
    answer = await health_pb2_grpc.HealthStub(w.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return answer.status == health_pb2.HealthCheckResponse.SERVING


async def _watched(w: World) -> tuple[int, int]:
    """What the other tenant holds: its invoices and audit events."""
    async with w.hub.db.read("test.watched") as session:
        invoices = await session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.tenant_id == w.other)
        )
        events = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.tenant_id == w.other)
        )
    return int(invoices or 0), int(events or 0)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_no_generated_request_reaches_internal(database_url: str, method: MethodDescriptor) -> None:
    with world(database_url) as w:
        requests = st.one_of(
            messages(method.input_type, known=w.known),
            mutated(method.input_type, w.known),
        )
        watched = w.run(_watched(w))

        @SETTINGS
        @given(request=requests, extra=st.lists(requests, max_size=2))
        def check(request: Any, extra: list[Any]) -> None:
            raw = [m.SerializeToString() for m in [request, *extra]]
            code = w.run(_call(w, method, raw))
            assert code not in FORBIDDEN, (method.name, code, request)
            assert w.run(_healthy(w))

        check()
        assert w.run(_watched(w)) == watched  # no request reached another tenant


@st.composite
def _batch(draw: st.DrawFn) -> list[tuple[Any, bool]]:
    """Up to six invoices, each valid or a valid one made hostile: (twin, is_valid).

    References are made unique after drawing (the draws must not depend on them); a
    hostile reference drawn for an invoice is kept.
    """
    batch = []
    for _ in range(draw(st.integers(1, 6))):
        seed = draw(st.integers(0, 20))
        valid = twin_of(proto_invoice(f"SEED-{seed}"))
        invoice = (
            valid if draw(st.booleans()) else draw(hostile_invoice(proto_invoice(f"SEED-{seed}")))
        )
        if invoice.erp_reference == f"SEED-{seed}".encode():
            invoice.erp_reference = unique_reference().encode()
        batch.append((invoice, invoice is valid))
    return batch


def test_valid_neighbours_of_hostile_invoices_are_stored_and_acked(database_url: str) -> None:
    with world(database_url) as w:

        @settings(SETTINGS, max_examples=150)
        @given(first=_batch(), second=_batch())
        def check(first: list[tuple[Any, bool]], second: list[tuple[Any, bool]]) -> None:
            requests = [_request(first), _request(second)]
            responses, code = w.run(_submit(w, requests))
            assert code == grpc.StatusCode.OK, code  # one bad invoice never ends the stream
            assert len(responses) == 2
            for batch, response in zip((first, second), responses, strict=True):
                assert len(response.acks) == len(batch)
                for (_, valid), ack in zip(batch, response.acks, strict=True):
                    if valid:
                        assert ack.outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED, ack
                        assert ack.invoice_id
            stored = w.run(_stored(w, [ack.invoice_id for r in responses for ack in r.acks]))
            for batch, response in zip((first, second), responses, strict=True):
                for (_, valid), ack in zip(batch, response.acks, strict=True):
                    if valid:
                        assert stored[ack.invoice_id] == "QUEUED"
            assert w.run(_healthy(w))
            checked = w.run(_validate(w, first))
            for (_, valid), result in zip(first, checked.results, strict=True):
                if valid:
                    assert result.valid

        check()


def _request(batch: list[tuple[Any, bool]]) -> bytes:
    twin = twin_of(invoice_service_pb2.SubmitInvoicesRequest())
    twin.invoices.extend(invoice for invoice, _ in batch)  # type: ignore[attr-defined]
    return twin.SerializeToString()


async def _submit(
    w: World, requests: list[bytes]
) -> tuple[list[invoice_service_pb2.SubmitInvoicesResponse], grpc.StatusCode]:
    call = w.channel.stream_stream(
        "/fbrhub.v1.InvoiceService/SubmitInvoices",
        request_serializer=lambda data: data,
        response_deserializer=invoice_service_pb2.SubmitInvoicesResponse.FromString,
    )(iter(requests), metadata=w.keys.metadata("erp"), timeout=60)
    responses = [response async for response in call]
    return responses, await call.code()


async def _validate(
    w: World, batch: list[tuple[Any, bool]]
) -> invoice_service_pb2.ValidateInvoicesResponse:
    call = w.channel.unary_unary(
        "/fbrhub.v1.InvoiceService/ValidateInvoices",
        request_serializer=lambda data: data,
        response_deserializer=invoice_service_pb2.ValidateInvoicesResponse.FromString,
    )
    response: invoice_service_pb2.ValidateInvoicesResponse = await call(
        _request(batch), metadata=w.keys.metadata("erp"), timeout=60
    )
    return response


async def _stored(w: World, ids: list[str]) -> dict[str, str]:
    wanted = [uuid.UUID(i) for i in ids if i]
    async with w.hub.db.read("test.stored") as session:
        rows = (
            await session.execute(select(Invoice.id, Invoice.state).where(Invoice.id.in_(wanted)))
        ).all()
    return {str(row.id): row.state for row in rows}
