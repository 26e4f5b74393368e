"""The naive design, for comparison: one unary RPC and one transaction per invoice.

A tiny grpc.aio server with one generic method, ``/bench.NaiveInvoices/Submit``: it takes one
serialized ``fbrhub.v1.Invoice``, converts it with the hub's converter, and stores it with
the hub's own :class:`~server.invoices.intake.Ingestor` as a batch of one, i.e. the same
validation, idempotency check and INSERT as the hub, in a transaction of its own. Only the
design differs (per-invoice round trip and commit instead of a stream of batches). It skips
API-key checks, which only favours it.

Run: ``python -m bench.naive_server --database-url URL --tenant-id UUID --port N``
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid
from typing import Any

import grpc

from fbrhub.v1 import invoice_pb2
from server.access.tenants import load_tenant
from server.api.convert import invoices as converters
from server.db.engine import Database
from server.db.notify import Notifier
from server.invoices.intake import Ingestor


async def serve(database_url: str, tenant_id: uuid.UUID, port: int) -> None:
    """Serve until SIGTERM."""
    db = Database(database_url)
    tenant = await load_tenant(db, tenant_id)
    if tenant is None:
        raise SystemExit(f"no tenant {tenant_id}")
    ingestor = Ingestor(db, Notifier())

    async def submit(message: invoice_pb2.Invoice, _context: Any) -> bytes:
        (ack,) = await ingestor.submit(tenant, [converters.invoice_to_domain(message)])
        return converters.ack_to_proto(ack).SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "bench.NaiveInvoices",
        {
            "Submit": grpc.unary_unary_rpc_method_handler(
                submit,
                request_deserializer=invoice_pb2.Invoice.FromString,
                response_serializer=lambda data: data,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1.0)
    await db.dispose()


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--tenant-id", type=uuid.UUID, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.database_url, args.tenant_id, args.port))


if __name__ == "__main__":
    main()
