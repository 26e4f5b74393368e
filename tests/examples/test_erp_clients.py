"""The ERP examples in other languages run against a real hub: Node (grpc-js) and Go.

Each streams 12 invoices in batches of 5 (the fourth has an HS code without its dot), follows
StreamResults until every queued invoice has an outcome, and decodes a NOT_FOUND error's
ErrorInfo; its last output line is a JSON summary checked here. The hub is the in-process
test hub on SQLite, delivering to the FBR simulator over HTTP.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from server.app import Hub
from tests.conftest import Tenant
from tests.examples.test_generated_code import generate
from tests.examples.toolchains import NODE_MODULES, go_path, node_package, run, tool

# One database is enough: the examples exercise the API, not storage.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
REJECTED = [{"field": "invoices[3].items[0].hs_code", "reason": "FBR_0019"}]


def _example_env(hub: Hub, tenant: Tenant, tmp_path: Path, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "HUB_ADDRESS": hub.address,
        "HUB_API_KEY": tenant.api_key,
        "INVOICE_PREFIX": prefix,
        "CURSOR_FILE": str(tmp_path / f"{prefix}.cursor"),
    }


def _summary(output: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return summary


def _check(summary: dict[str, Any]) -> None:
    assert summary["acks"] == 12 and summary["queued"] == 11
    assert [{k: v[k] for k in ("field", "reason")} for v in summary["rejected"]] == REJECTED
    assert summary["outcomes"] == ["RESULT_KIND_ACCEPTED"] * 11
    assert summary["notFound"] == {"code": 5, "reason": "NOT_FOUND"}


async def test_node_example(hub: Hub, tenant: Tenant, tmp_path: Path) -> None:
    node = tool("node", "apt-get install nodejs")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader", "protobufjs"):
        node_package(package)
    env = _example_env(hub, tenant, tmp_path, "NODE")
    code, output = await run([node, "examples/node/erp_client.js"], env=env, timeout=90)
    assert code == 0, output
    _check(_summary(output))
    assert (tmp_path / "NODE.cursor").read_text()  # the place is kept for the next run
    assert NODE_MODULES.exists()


async def test_go_example(hub: Hub, tenant: Tenant, tmp_path: Path) -> None:
    generated = await generate(tmp_path / "out")
    env = {
        **_example_env(hub, tenant, tmp_path, "GO"),
        "GOPATH": go_path(generated),
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(tmp_path / "gocache"),
    }
    binary = tmp_path / "erp_client"
    argv = ["go", "build", "-o", str(binary), "./examples/go/erp_client"]
    code, output = await run(argv, env=env, timeout=300)
    assert code == 0, output
    code, output = await run([str(binary)], env=env, timeout=90)
    assert code == 0, output
    _check(_summary(output))
