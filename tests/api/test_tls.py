"""TLS and mutual TLS on the gRPC port, with certificates generated for the test."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fbrhub.v1 import audit_service_pb2, audit_service_pb2_grpc
from server.app import Hub, start_hub
from server.db.engine import Database
from tests.conftest import RoleKeys, hub_settings

Pem = tuple[bytes, bytes]  # (certificate, key)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue(name: str, issuer: Pem | None, *, ca: bool = False, server: bool = False) -> Pem:
    """A certificate for ``name``, self-signed when ``issuer`` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    if issuer is None:
        issuer_name, signing_key = subject, key
    else:
        issuer_cert = x509.load_pem_x509_certificate(issuer[0])
        issuer_name = issuer_cert.subject
        signing_key = serialization.load_pem_private_key(issuer[1], None)  # type: ignore[assignment]
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = builder.sign(signing_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | Pem]:
    folder = tmp_path_factory.mktemp("pki")
    ca = issue("fbrhub test CA", None, ca=True)
    server = issue("localhost", ca, server=True)
    client = issue("erp-client", ca)
    rogue_ca = issue("rogue CA", None, ca=True)
    rogue = issue("rogue-client", rogue_ca)
    for name, (cert, key) in {"ca": ca, "server": server}.items():
        (folder / f"{name}.crt").write_bytes(cert)
        (folder / f"{name}.key").write_bytes(key)
    return {"dir": folder, "ca": ca, "client": client, "rogue": rogue}


async def _hub(database_url: str, pki: dict[str, object], mutual: bool) -> Hub:
    folder = pki["dir"]
    assert isinstance(folder, Path)
    settings = hub_settings(
        database_url,
        "http://127.0.0.1:9",
        forwarder_enabled=False,
        retention_sweeper_enabled=False,
        tls_cert_file=str(folder / "server.crt"),
        tls_key_file=str(folder / "server.key"),
        tls_client_ca_file=str(folder / "ca.crt") if mutual else None,
    )
    return await start_hub(settings, db=Database(database_url))


@pytest.fixture
async def tls_hub(database_url: str, pki: dict[str, object]) -> AsyncIterator[Hub]:
    hub = await _hub(database_url, pki, mutual=False)
    yield hub
    await hub.stop(grace=0.5)


@pytest.fixture
async def mtls_hub(database_url: str, pki: dict[str, object]) -> AsyncIterator[Hub]:
    hub = await _hub(database_url, pki, mutual=True)
    yield hub
    await hub.stop(grace=0.5)


def _channel(hub: Hub, ca: Pem, client: Pem | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca[0],
        private_key=client[1] if client else None,
        certificate_chain=client[0] if client else None,
    )
    return grpc.aio.secure_channel(
        f"localhost:{hub.port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


async def test_tls_serves_authenticated_calls_and_refuses_plaintext(
    tls_hub: Hub, pki: dict[str, Pem], role_keys: RoleKeys
) -> None:
    async with _channel(tls_hub, pki["ca"], None) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        reply = await audit_service_pb2_grpc.AuditServiceStub(channel).VerifyAuditChain(
            audit_service_pb2.VerifyAuditChainRequest(), metadata=role_keys.metadata("auditor")
        )
        assert reply.intact
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_hub.port}") as plain:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await _health(plain)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(
    mtls_hub: Hub, pki: dict[str, Pem]
) -> None:
    async with _channel(mtls_hub, pki["ca"], pki["client"]) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    for client in (None, pki["rogue"]):
        async with _channel(mtls_hub, pki["ca"], client) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await _health(channel)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_sdk_presents_a_client_certificate_for_mutual_tls(
    mtls_hub: Hub, pki: dict[str, Pem], role_keys: RoleKeys
) -> None:
    from fbrhub_sdk import AsyncHubClient

    options = [("grpc.ssl_target_name_override", "localhost")]
    address = f"localhost:{mtls_hub.port}"
    key = role_keys.keys["erp"]
    async with AsyncHubClient(
        address,
        key,
        root_certificates=pki["ca"][0],
        client_certificate=pki["client"],
        options=options,
    ) as client:
        assert await client.is_serving(timeout=5)
    async with AsyncHubClient(
        address, key, root_certificates=pki["ca"][0], options=options
    ) as client:
        assert not await client.is_serving(timeout=5)
