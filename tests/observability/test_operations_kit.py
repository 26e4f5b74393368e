"""The operations kit in deploy/observability/ asks only for what the hub exports.

A short run through the real hub (accepted, rejected and retried invoices, an FBR outage that
opens the circuit, a follower, a queue check) fills the process's Prometheus registry; every
metric and label the Grafana dashboard and the alert rules use must be in it. Alerts link to
runbook sections that exist, and the queue gauges read zero once a queue drains.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import generate_latest

from clients.fbr_simulator import FbrSimulator
from clients.fbr_simulator.schedule import OutageMode
from fbrhub.v1 import invoice_service_pb2_grpc
from server.app import Hub
from server.db.engine import Database
from server.db.notify import Notifier
from server.invoices.monitor import QueueMonitor
from tests.conftest import (
    OTHER_TOKEN,
    SELLER_NTN,
    MetricReaders,
    Tenant,
    make_tenant,
    postgres_only,
)
from tests.helpers import (
    eventually,
    metric_points,
    missing,
    proto_invoice,
    results_until,
    submit,
)

KIT = Path(__file__).parents[2] / "deploy" / "observability"
OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"
# PromQL words that are not metric names.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan"}
)
# Series Prometheus makes itself.
_BUILT_IN = frozenset({"ALERTS", "ALERTS_FOR_STATE"})
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panels, variables, annotations."""
    board = json.loads((KIT / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    queries += [a["expr"] for a in board["annotations"]["list"]]
    return queries


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((KIT / "alerts.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def used_names(query: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression (or label_values call) uses."""
    query = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)  # string contents name nothing
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", query):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", query):
        labels |= {name.strip() for name in grouping.split(",") if name.strip()}
    call = re.match(r"label_values\((\w+),\s*(\w+)\)", query)
    if call:
        return {call.group(1)}, {call.group(2)}
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", query)
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    names = set()
    for match in _NAME.finditer(bare):
        word, rest = match.group(), bare[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS or word.startswith("$"):
            continue
        if re.fullmatch(r"\d+\w*", word) or bare[match.start() - 1 : match.start()] == "$":
            continue
        names.add(word)
    return names - {"le"}, labels - {"le"}


def exposition(readers: MetricReaders) -> tuple[set[str], set[str]]:
    """The sample names and label names the hub exposes to Prometheus now."""
    text = generate_latest(readers.prometheus).decode()
    samples, labels = set(), set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        samples.add(name.split(" ")[0])
        labels |= set(re.findall(r'([a-zA-Z_]\w*)="', rest.rpartition("}")[0]))
    return samples, labels


async def run_a_little_of_everything(
    hub: Hub,
    stub: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    db: Database,
    reader: InMemoryMetricReader,
) -> None:
    """Accepted, rejected and retried invoices; an outage long enough to open the circuit."""
    await simulator.begin_outage(OutageMode.GATEWAY)
    await submit(stub, tenant, [proto_invoice(f"KIT-{i}") for i in range(6)])

    async def circuit_opened() -> bool:
        return any(p.value == 2 for p in metric_points(reader, "fbrhub.fbr.circuit.state"))

    await eventually(circuit_opened)
    assert hub.monitor is not None
    await hub.monitor.check()  # the queue gauges, while the queue is full
    await simulator.end_outage()
    mismatched = await make_tenant(db, SELLER_NTN, OTHER_TOKEN)  # FBR refuses: a rejection
    await submit(stub, mismatched, [proto_invoice("KIT-REJECTED")])
    await results_until(stub, tenant, 6)
    await results_until(stub, mismatched, 1)


async def test_the_dashboard_and_alerts_use_only_what_the_hub_exports(
    hub: Hub,
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    db: Database,
    metric_readers: MetricReaders,
) -> None:
    await run_a_little_of_everything(hub, invoices, simulator, tenant, db, metric_readers.memory)
    samples, exported_labels = exposition(metric_readers)
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    queries = dashboard_queries() + [rule["expr"] for rule in rules()]
    assert len(queries) > 30
    missing: dict[str, set[str]] = {}
    for query in queries:
        names, labels = used_names(query)
        for name in names - recorded - _BUILT_IN - samples:
            missing.setdefault(name, set()).add(query[:80])
        for label in labels - exported_labels - {"alertname", "alertstate"}:
            missing.setdefault(f"label {label}", set()).add(query[:80])
    assert missing == {}, f"not exported by the hub: {sorted(missing)}"
    # And the names really are the hub's, not defaults of some library.
    assert "fbrhub_queue_in_doubt" in samples
    assert "http_client_request_duration_seconds_bucket" in samples
    assert "rpc_server_call_duration_seconds_bucket" in samples


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+\s+(.*)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_alert_links_to_its_runbook_section() -> None:
    sections = anchors(OPERATIONS.read_text())
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "FbrhubInvoicesInDoubt",
        "FbrhubOldestPendingTooOld",
        "FbrhubFbrCircuitOpen",
        "FbrhubFbrErrorRate",
        "FbrhubSloBurnFast",
    }
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md" and anchor == alert["alert"].lower(), url
        assert anchor in sections, f"docs/operations.md has no section #{anchor}"


def test_the_collector_pipelines_use_only_components_it_defines() -> None:
    config = yaml.safe_load((KIT / "otel-collector.yaml").read_text())
    assert set(config["service"]["pipelines"]) == {"traces", "metrics", "logs"}
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(config[kind]), (kind, pipeline[kind])
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    if shutil.which("promtool") is None:
        missing("promtool", "apt-get install prometheus")
    result = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yaml"],
        cwd=KIT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_queue_gauges_read_zero_once_the_queue_drains(
    hub: Hub,
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    metric_reader: InMemoryMetricReader,
) -> None:
    assert hub.monitor is not None

    def gauge(name: str) -> list[float]:
        return [
            p.value
            for p in metric_points(metric_reader, f"fbrhub.queue.{name}")
            if p.attributes.get("fbrhub.tenant_id") == str(tenant.id)
        ]

    await hub.monitor.check()
    assert gauge("pending") == [0]  # every tenant is reported, even with nothing queued
    await simulator.begin_outage(OutageMode.GATEWAY)
    await submit(invoices, tenant, [proto_invoice(f"DRAIN-{i}") for i in range(3)])
    await hub.monitor.check()
    assert gauge("pending") == [3]
    assert gauge("oldest_pending_age")[0] >= 0
    await simulator.end_outage()
    await results_until(invoices, tenant, 3)
    await hub.monitor.check()
    assert gauge("pending") == [0]
    assert gauge("in_doubt") == [0] and gauge("stuck") == [0]
    assert gauge("oldest_pending_age") == [0]


@postgres_only  # SQLite serves one process, which always reports
async def test_one_process_reports_the_queue_and_another_takes_over(
    db: Database, tenant: Tenant, metric_reader: InMemoryMetricReader
) -> None:
    lock = 0x7E57  # not the hubs' lock: no running hub takes part
    first, second = (
        QueueMonitor(db, Notifier(), interval_seconds=60, stuck_after_seconds=900, lock_id=lock)
        for _ in range(2)
    )

    def reported() -> list[float]:
        return [
            p.value
            for p in metric_points(metric_reader, "fbrhub.queue.pending")
            if p.attributes.get("fbrhub.tenant_id") == str(tenant.id)
        ]

    try:
        await first.check()
        assert await second.check() == []  # the first holds the lock: the second stays quiet
        assert reported() == [0]  # once, not once per process
        await first.close()  # a stopping (or dead) process frees the lock...
        await second.check()  # ...and the next round of another one takes over
        assert reported() == [0]
        assert await first.check() == [] and reported() == [0]
    finally:
        await first.close()
        await second.close()
