"""The hub as a process: health, reflection, CLI administration and graceful SIGTERM."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fbrhub.v1 import invoice_service_pb2, invoice_service_pb2_grpc
from server.app import Hub
from server.processes import child_env, spawn_hub


async def test_health_and_reflection_need_no_key(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "fbrhub.v1.InvoiceService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = set()
        async for reply in call:
            names = {s.name for s in reply.list_services_response.service}
            break
        call.cancel()
    assert "fbrhub.v1.InvoiceService" in names


async def test_stop_turns_health_to_not_serving_first(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="fbrhub.v1.InvoiceService")
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(hub.stop(grace=1.0))
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.commands",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_sets_up_a_tenant_and_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    settings = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "fbr_base_url": "http://127.0.0.1:9",
    }
    env = child_env(settings)
    code, out, _ = await _run("migrate", env=env)
    assert code == 0, out
    code, tenant_id, err = await _run(
        "tenant",
        "create",
        "--ntn",
        "1234567",
        "--name",
        "CLI Traders",
        "--province",
        "SINDH",
        "--address",
        "Karachi",
        "--fbr-token",
        "tok",
        env=env,
    )
    assert code == 0, err
    code, key, err = await _run("apikey", "create", "--tenant", tenant_id.strip(), env=env)
    assert code == 0, err
    assert "shown only once" in err
    code, _, err = await _run(
        "tenant",
        "create",
        "--ntn",
        "12-34",
        "--name",
        "x",
        "--province",
        "SINDH",
        "--address",
        "x",
        "--fbr-token",
        "t",
        env=env,
    )
    assert code == 2 and "7 or 13 digits" in err

    server = spawn_hub(tmp_path / "hub.log", settings)
    try:
        await server.wait_serving(timeout=20)
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
            listed = await stub.ListInvoices(
                invoice_service_pb2.ListInvoicesRequest(),
                metadata=(("authorization", f"Bearer {key.strip()}"),),
            )
            assert list(listed.invoices) == []
        # SIGTERM, and SIGKILL only if the hub has not stopped within 20 s: then the code is -9.
        code = await server.stop(timeout=20)
    finally:
        server.kill()
    assert code == 0, server.tail()
    assert "hub stopped" in server.log.read_text()
