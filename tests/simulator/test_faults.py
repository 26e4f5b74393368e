"""The simulator's seeded fault plan over real HTTP: latency, bursts, outages, tokens, stats."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import random
import re
import signal
import statistics
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from clients.fbr_simulator import Fault, FbrSimulator, TokenGrant
from clients.fbr_simulator.cli import _parser, build_plan, parse_outage, parse_token
from clients.fbr_simulator.schedule import (
    Burst,
    FaultInjector,
    FaultPlan,
    Latency,
    Outage,
    OutageMode,
    Step,
)
from tests.fbr.cases import SELLER
from tests.simulator.common import NOW, POST_SB, SANDBOX_TOKEN, TOKENS, two_lines

INVOICE_ID = "X-Hub-Invoice-Id"


class Clock:
    """A clock the test moves by hand, so time windows need no sleeping."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Any]]:
    """Start simulators for a test and stop them all afterwards."""
    running: list[FbrSimulator] = []

    async def start(**options: Any) -> FbrSimulator:
        options.setdefault("clock", lambda: NOW)
        simulator = FbrSimulator(tokens=TOKENS, **options)
        await simulator.start()
        running.append(simulator)
        return simulator

    yield start
    for simulator in running:
        await simulator.stop()


async def post(
    http: aiohttp.ClientSession,
    sim: FbrSimulator,
    *,
    token: str = SANDBOX_TOKEN,
    invoice_id: str | None = None,
    timeout: float | None = None,
) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"}
    if invoice_id is not None:
        headers[INVOICE_ID] = invoice_id
    async with http.post(
        sim.base_url + POST_SB,
        data=orjson.dumps(two_lines()),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout) if timeout else None,
    ) as response:
        return response.status, dict(response.headers), await response.text()


async def statuses(http: aiohttp.ClientSession, sim: FbrSimulator, count: int) -> list[int]:
    return [(await post(http, sim))[0] for _ in range(count)]


async def assert_refused(sim: FbrSimulator) -> None:
    """A fresh connection to the simulator's port is refused by the kernel."""
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectorError) as raised:
            await fresh.get(sim.base_url + "/__sim/stats")
    assert raised.value.os_error.errno == errno.ECONNREFUSED
    async with httpx.AsyncClient() as client:  # what the hub's FBR client would see
        with pytest.raises(httpx.ConnectError):
            await client.get(sim.base_url + "/__sim/stats")


# --- determinism --------------------------------------------------------------------------------

MIXED_PLAN = FaultPlan(
    seed=7,
    latency=Latency.lognormal(0.0005, 0.0005, high=0.002),
    error_rate=0.2,
    fault_rates={Fault.TOO_MANY_REQUESTS: 0.1, Fault.HTML_200: 0.05},
    bursts=(Burst(every=10, length=3),),
)


async def test_the_same_seed_and_requests_give_the_same_faults(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    runs = []
    for plan in (MIXED_PLAN, MIXED_PLAN, replace(MIXED_PLAN, seed=8)):
        sim = await started(plan=plan)
        runs.append(await statuses(http, sim, 40))
        assert sim.injector.requests == 40
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # the seed matters
    assert set(runs[0]) == {200, 503, 429}  # html_200 answers 200 too
    assert runs[0][10:13] == [503, 503, 503]  # the burst, whatever the random draws say


def test_latencies_repeat_under_a_seed_and_do_not_shift_after_a_scripted_request() -> None:
    def decisions(injector: FaultInjector, count: int) -> list[tuple[Fault | None, float]]:
        return [injector.decide(None) for _ in range(count)]

    assert decisions(FaultInjector(MIXED_PLAN), 50) == decisions(FaultInjector(MIXED_PLAN), 50)
    scripted = FaultInjector(MIXED_PLAN)
    scripted.script([Step(Fault.ACCEPT_THEN_DROP, latency=3.0)])
    # Request n draws the same numbers whether or not an earlier request was scripted.
    assert decisions(scripted, 50)[1:] == decisions(FaultInjector(MIXED_PLAN), 50)[1:]


@pytest.mark.parametrize(
    ("latency", "low", "high", "mean"),
    [
        (Latency.fixed(0.05), 0.05, 0.05, 0.05),
        (Latency.uniform(0.01, 0.03), 0.01, 0.03, 0.02),
        (Latency.normal(0.05, 0.02), 0.0, None, 0.05),
        (Latency.lognormal(0.05, 0.03), 0.0, None, 0.05),
        (Latency.lognormal(0.05, 0.1, high=0.2), 0.0, 0.2, None),
    ],
    ids=["fixed", "uniform", "normal", "lognormal", "lognormal-clipped"],
)
def test_latency_distributions_keep_their_bounds_and_mean(
    latency: Latency, low: float, high: float | None, mean: float | None
) -> None:
    generator = random.Random(3)
    draws = [latency.sample(generator) for _ in range(20_000)]
    assert min(draws) >= low
    if high is not None:
        assert max(draws) <= high
    if mean is not None:
        assert statistics.fmean(draws) == pytest.approx(mean, rel=0.05)
    if latency.distribution == "lognormal" and mean is not None:
        assert statistics.stdev(draws) == pytest.approx(0.03, rel=0.15)
        assert statistics.median(draws) < mean  # the long right tail


async def test_a_scripted_step_delays_only_its_request(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    sim.script(Step(latency=0.2), Step(Fault.TOO_MANY_REQUESTS, latency=0.0))
    loop = asyncio.get_running_loop()
    timings = []
    for _ in range(3):
        began = loop.time()
        status, _, _ = await post(http, sim)
        timings.append((status, loop.time() - began))
    assert [status for status, _ in timings] == [200, 429, 200]
    assert timings[0][1] >= 0.2
    assert timings[1][1] < 0.2 and timings[2][1] < 0.2


# --- bursts, 429, drop and hang --------------------------------------------------------------


async def test_bursts_are_consecutive_gateway_faults(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started(plan=FaultPlan(bursts=(Burst(every=5, length=2),)))
    assert await statuses(http, sim, 12) == [200] * 5 + [503] * 2 + [200] * 3 + [503] * 2
    assert len(sim.issued) == 8
    assert sim.faults_applied == {Fault.GATEWAY_5XX: 4}


async def test_a_planned_429_says_when_to_retry(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    plan = FaultPlan(fault_rates={Fault.TOO_MANY_REQUESTS: 1.0}, retry_after_seconds=7)
    sim = await started(plan=plan)
    status, headers, text = await post(http, sim)
    assert (status, headers["Retry-After"]) == (429, "7")
    assert orjson.loads(text)["fault"]["code"] == 900802
    assert sim.issued == []


async def test_drop_closes_the_connection_before_issuing(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    sim.script(Fault.DROP)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, sim, invoice_id="dropped")
    assert sim.issued_count("dropped") == 0
    assert (await post(http, sim, invoice_id="dropped"))[0] == 200


async def test_hang_times_the_client_out_without_issuing(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    sim.script(Fault.HANG)
    with pytest.raises(TimeoutError):
        await post(http, sim, invoice_id="hung", timeout=0.3)
    assert sim.issued_count("hung") == 0
    loop = asyncio.get_running_loop()
    began = loop.time()
    await sim.stop()  # does not wait for the hung handler
    assert loop.time() - began < 0.9


# --- outages ------------------------------------------------------------------------------------


async def test_a_refusing_outage_window_refuses_connections_then_recovers_on_the_same_port(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    clock = Clock()
    sim = await started(clock=clock, plan=FaultPlan(outages=(Outage(10, 5, OutageMode.REFUSE),)))
    url = sim.base_url
    assert (await post(http, sim))[0] == 200
    clock.advance(10)
    assert await sim.enforce_schedule() is OutageMode.REFUSE
    await assert_refused(sim)
    clock.advance(5)
    assert await sim.enforce_schedule() is None
    assert sim.base_url == url
    assert (await post(http, sim))[0] == 200
    assert len(sim.issued) == 2


async def test_a_refusing_outage_closes_open_keep_alive_connections(
    started: Callable[..., Any],
) -> None:
    sim = await started()
    reader, writer = await asyncio.open_connection(*sim.base_url[7:].split(":"))
    request = b"GET /__sim/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    writer.write(request)
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    await sim.begin_outage(OutageMode.REFUSE)
    await asyncio.wait_for(reader.read(), timeout=5)  # the rest of the answer, then EOF
    assert reader.at_eof()
    writer.close()
    await assert_refused(sim)
    await sim.end_outage()
    async with aiohttp.ClientSession() as fresh, fresh.get(sim.base_url + "/__sim/stats") as got:
        assert got.status == 200


async def test_a_gateway_outage_at_an_absolute_time_answers_503_to_everything(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    clock = Clock()
    outage = Outage(NOW + dt.timedelta(minutes=1), 30, OutageMode.GATEWAY)
    sim = await started(clock=clock, plan=FaultPlan(outages=(outage,)))
    assert await statuses(http, sim, 1) == [200]
    clock.advance(60)
    assert sim.outage_now() is OutageMode.GATEWAY
    assert await statuses(http, sim, 3) == [503, 503, 503]
    clock.advance(30)
    assert await statuses(http, sim, 1) == [200]
    assert len(sim.issued) == 2
    assert sim.stats["postinvoicedata_sb", "gateway_5xx"] == 3


async def test_a_hanging_outage_answers_nothing_and_issues_nothing(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    await sim.begin_outage(OutageMode.HANG)
    with pytest.raises(TimeoutError):
        await post(http, sim, invoice_id="a", timeout=0.2)
    await sim.end_outage()
    assert (await post(http, sim, invoice_id="a"))[0] == 200
    assert sim.issued_count("a") == 1


async def test_scripted_faults_beat_an_outage(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    await sim.begin_outage(OutageMode.GATEWAY)
    sim.script(Fault.TOO_MANY_REQUESTS)
    assert await statuses(http, sim, 2) == [429, 503]


# --- tokens -------------------------------------------------------------------------------------


async def test_an_expired_token_gets_the_wso2_401(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    clock = Clock()
    sim = await started(clock=clock)
    sim.tokens.expire(SANDBOX_TOKEN, NOW + dt.timedelta(minutes=5))
    assert (await post(http, sim))[0] == 200
    clock.advance(300)
    status, _, text = await post(http, sim)
    fault = orjson.loads(text)["fault"]
    assert (status, fault["code"], fault["message"]) == (401, 900901, "Invalid Credentials")
    assert len(sim.issued) == 1


async def test_rotated_and_revoked_tokens_are_refused_at_once(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    sim.tokens.rotate(SANDBOX_TOKEN, "fresh-token")
    assert (await post(http, sim))[0] == 401
    assert (await post(http, sim, token="fresh-token"))[0] == 200
    assert sim.tokens["fresh-token"].seller_ntn_cnic == SELLER
    sim.tokens.revoke("fresh-token")
    assert (await post(http, sim, token="fresh-token"))[0] == 401


# --- the /__sim endpoints -----------------------------------------------------------------------


async def test_stats_report_numbers_per_invoice_id_and_duplicates(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    sim.script(Fault.GATEWAY_5XX)
    for invoice_id in ("inv-1", "inv-1", "inv-1", "inv-2"):
        await post(http, sim, invoice_id=invoice_id)
    async with http.get(
        sim.base_url + "/__sim/stats", params=[("key", "inv-1"), ("key", "x"), ("per_key", "1")]
    ) as response:
        report = await response.json()
    assert report["requests"] == 4
    assert (report["issued"], report["keys"]) == (3, 2)
    assert report["duplicates"] == {"inv-1": 2} == sim.duplicates()
    assert report["issued_for"] == {"inv-1": 2, "x": 0}
    assert report["issued_per_key"] == {"inv-1": 2, "inv-2": 1}
    assert report["faults"] == {"gateway_5xx": 1}
    assert report["outcomes"]["postinvoicedata_sb/accepted"] == 3
    assert report["outage"] is None
    assert report == {**sim.summary(per_key=True), "issued_for": report["issued_for"]}


async def test_faults_and_tokens_can_be_steered_over_http(
    http: aiohttp.ClientSession, started: Callable[..., Any]
) -> None:
    sim = await started()
    control = sim.base_url + "/__sim"
    steps = ["too_many_requests", None, {"fault": "gateway_5xx", "latency_ms": 1}]
    async with http.post(control + "/script", json=steps) as response:
        assert (response.status, await response.json()) == (200, {"queued": 3})
    assert await statuses(http, sim, 4) == [429, 200, 503, 200]
    async with http.post(control + "/script", json=["no_such_fault"]) as response:
        assert response.status == 400
    grant = {"seller": "7000007", "environment": "sandbox", "expires_at": None}
    async with http.put(control + "/tokens/new-token", json=grant) as response:
        assert response.status == 200
    assert sim.tokens["new-token"] == TokenGrant("7000007", "sandbox")
    async with http.delete(control + "/tokens/new-token") as response:
        assert response.status == 200
    assert "new-token" not in sim.tokens


# --- plans and the command line ----------------------------------------------------------------


def test_a_plan_survives_json() -> None:
    plan = FaultPlan(
        seed=3,
        latency=Latency.lognormal(0.05, 0.02, high=1.0),
        error_rate=0.01,
        fault_rates={Fault.ACCEPT_THEN_DROP: 0.001},
        bursts=(Burst(500, 5, Fault.TOO_MANY_REQUESTS, start=10),),
        outages=(
            Outage(30.0, 10.0, OutageMode.REFUSE),
            Outage(NOW, 5.0, OutageMode.HANG),
        ),
        script=(Step(Fault.GATEWAY_5XX), Step(None, 0.25)),
        retry_after_seconds=4,
    )
    assert FaultPlan.from_dict(orjson.loads(orjson.dumps(plan.to_dict()))) == plan


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault plan keys"):
        FaultPlan.from_dict({"eror_rate": 0.1})
    with pytest.raises(ValueError, match="more than 1"):
        FaultPlan(error_rate=0.7, fault_rates={Fault.HTML_200: 0.5})
    with pytest.raises(ValueError, match="length"):
        Burst(every=3, length=4)
    with pytest.raises(ValueError, match="not both"):
        FbrSimulator(tokens=TOKENS, latency=0.1, plan=FaultPlan())


def test_command_line_flags_build_the_plan(tmp_path: Any) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(orjson.dumps({"seed": 1, "error_rate": 0.5, "script": ["drop"]}).decode())
    argv = [
        *("--token", "t=8885801", "--faults-file", str(plan_file), "--seed", "7"),
        *("--latency-dist", "lognormal", "--latency-ms-mean", "50", "--latency-ms-stddev", "20"),
        *("--error-rate", "0.02", "--fault-rate", "too_many_requests=0.01"),
        *("--burst", "500:5", "--burst", "100:1:accept_then_drop"),
        *("--outage", "30:10:refuse", "--outage", "2025-05-13T07:00:00+00:00:5:hang"),
        *("--script", "gateway_5xx,ok", "--retry-after", "3"),
    ]
    plan = build_plan(_parser().parse_args(argv))
    assert plan == FaultPlan(
        seed=7,
        latency=Latency.lognormal(0.05, 0.02),
        error_rate=0.02,
        fault_rates={Fault.TOO_MANY_REQUESTS: 0.01},
        bursts=(Burst(500, 5), Burst(100, 1, Fault.ACCEPT_THEN_DROP)),
        outages=(
            Outage(30, 10, OutageMode.REFUSE),
            Outage(NOW.replace(microsecond=0), 5, OutageMode.HANG),
        ),
        script=(Step(Fault.DROP), Step(Fault.GATEWAY_5XX), Step(None)),
        retry_after_seconds=3,
    )
    fixed = build_plan(_parser().parse_args(["--token", "t=1", "--latency", "0.02"]))
    assert fixed.latency == Latency.fixed(0.02)
    with pytest.raises(ValueError, match="not both"):
        build_plan(
            _parser().parse_args(["--token", "t=1", "--latency", "1", "--latency-ms-mean", "5"])
        )


def test_token_and_outage_flags_parse() -> None:
    _, grant = parse_token("t=8885801:production:expires=2025-05-13T07:00:00+00:00")
    assert grant == TokenGrant("8885801", "production", expires_at=NOW.replace(microsecond=0))
    _, grant = parse_token("t=8885801:expires=+60")
    assert grant.environment == "sandbox" and grant.expires_at is not None
    assert grant.expires_at > dt.datetime.now(dt.UTC)
    for bad in ("t=8885801:expires=soon", "t=8885801:staging"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_token(bad)
    assert parse_outage("30:10") == Outage(30.0, 10.0, OutageMode.REFUSE)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_outage("30:10:explode")


async def test_the_command_line_simulator_reports_over_http(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "clients.fbr_simulator", "--port", "0"),
        *("--token", f"{SANDBOX_TOKEN}={SELLER}:sandbox:expires=+3600"),
        *("--script", "gateway_5xx", "--seed", "7", "--error-rate", "0"),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(10):
            found = None
            while found is None:
                output = await process.stderr.readline()
                assert output, "the simulator exited before listening"
                found = re.search(rb"listening on (http://\S+)", output)
            url = found[1].decode()
            headers = {"Authorization": f"Bearer {SANDBOX_TOKEN}", INVOICE_ID: "cli-1"}
            for expected in (503, 200):
                async with http.post(url + POST_SB, json=two_lines(), headers=headers) as answer:
                    assert answer.status == expected
            async with http.get(url + "/__sim/stats", params={"key": "cli-1"}) as answer:
                report = await answer.json()
            assert (report["requests"], report["issued"], report["duplicates"]) == (2, 1, {})
            assert report["issued_for"] == {"cli-1": 1}
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
            rest = await process.stderr.read()
            assert b"after issuing 1 numbers (0 keys issued more than once)" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
