"""The FBR simulator over real HTTP: auth, numbers, FBR's answer shapes and every fault."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest

from clients.fbr.payload import to_fbr_json
from clients.fbr.rules import validate_invoice
from clients.fbr_simulator import Fault, FbrSimulator, TokenGrant
from clients.fbr_simulator.cli import parse_token
from tests.fbr.cases import CASES, SELLER, Case, first_reported, invoice
from tests.simulator.common import (
    CNIC_SELLER,
    CNIC_TOKEN,
    NOW,
    POST,
    POST_SB,
    PRODUCTION_TOKEN,
    SANDBOX_TOKEN,
    TOKENS,
    VALIDATE_SB,
    two_lines,
)

# 12:00 in Pakistan on the rule tests' TODAY.
TOKEN_FOR = {(g.seller_ntn_cnic, g.environment): token for token, g in TOKENS.items()}


@pytest.fixture
async def sim() -> AsyncIterator[FbrSimulator]:
    simulator = FbrSimulator(tokens=TOKENS, clock=lambda: NOW)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    sim: FbrSimulator,
    body: Any,
    *,
    path: str = POST_SB,
    token: str | None = SANDBOX_TOKEN,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[int, dict[str, str], str]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout else None
    async with http.post(
        sim.base_url + path, data=data, headers=sent, timeout=client_timeout
    ) as response:
        return response.status, dict(response.headers), await response.text()


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def test_valid_invoice_gets_a_number_and_numbered_lines(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    body = two_lines()
    status, _, text = await post(http, sim, body)
    assert status == 200
    answer = orjson.loads(text)
    number = answer["invoiceNumber"]
    assert re.fullmatch(r"\d{7}DI\d{13}", number) and number.startswith(SELLER + "DI")
    assert number == f"{SELLER}DI{int(NOW.timestamp() * 1000)}"  # epoch milliseconds
    assert answer["dated"] == "2025-05-13 12:00:00"  # Pakistan time
    verdict = answer["validationResponse"]
    assert (verdict["statusCode"], verdict["status"], verdict["error"]) == ("00", "Valid", "")
    assert verdict["invoiceStatuses"] == [
        {"itemSNo": "1", "statusCode": "00", "status": "Valid", "invoiceNo": f"{number}-1",
         "errorCode": "", "error": ""},
        {"itemSNo": "2", "statusCode": "00", "status": "Valid", "invoiceNo": f"{number}-2",
         "errorCode": "", "error": ""},
    ]  # fmt: skip
    (issued,) = sim.issued
    assert (issued.invoice_number, issued.seller_ntn_cnic) == (number, SELLER)
    assert issued.fingerprint == issued.key == fingerprint(body)
    assert sim.issued_count(fingerprint(body)) == 1
    assert sim.duplicates() == {}
    assert sim.stats["postinvoicedata_sb", "accepted"] == 1


async def test_cnic_seller_numbers_have_28_characters(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    body = to_fbr_json(invoice(seller_ntn_cnic=CNIC_SELLER))
    _, _, text = await post(http, sim, body, token=CNIC_TOKEN)
    assert re.fullmatch(r"4130276175937DI\d{13}", orjson.loads(text)["invoiceNumber"])


async def test_numbers_stay_unique_and_resends_are_counted_per_invoice_id(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    body = two_lines()
    numbers = []
    for _ in range(3):  # the clock stands still: numbers must still differ
        _, _, text = await post(http, sim, body, headers={"X-Hub-Invoice-Id": "inv-1"})
        numbers.append(orjson.loads(text)["invoiceNumber"])
    await post(http, sim, body, headers={"X-Hub-Invoice-Id": "inv-2"})
    assert numbers == sorted(set(numbers)) and len(numbers) == 3
    assert sim.issued_count("inv-1") == 3 and sim.issued_count("inv-2") == 1
    assert sim.duplicates() == {"inv-1": 3}
    assert all(issued.fingerprint == fingerprint(body) for issued in sim.issued)


async def test_validate_endpoint_answers_without_numbers_and_issues_none(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    status, _, text = await post(http, sim, two_lines(), path=VALIDATE_SB)
    answer = orjson.loads(text)
    assert status == 200 and "invoiceNumber" not in answer
    statuses = answer["validationResponse"]["invoiceStatuses"]
    assert [s["statusCode"] for s in statuses] == ["00", "00"]
    assert all("invoiceNo" not in s for s in statuses)
    assert sim.issued == []


@pytest.mark.parametrize(
    ("token", "path", "code", "message"),
    [
        (None, POST_SB, 900902, "Missing Credentials"),
        ("", POST_SB, 900902, "Missing Credentials"),
        ("no-such-token", POST_SB, 900901, "Invalid Credentials"),
        (SANDBOX_TOKEN, POST, 900901, "Invalid Credentials"),
        (PRODUCTION_TOKEN, POST_SB, 900901, "Invalid Credentials"),
    ],
)
async def test_bad_credentials_get_the_wso2_401_envelope(
    http: aiohttp.ClientSession,
    sim: FbrSimulator,
    token: str | None,
    path: str,
    code: int,
    message: str,
) -> None:
    status, _, text = await post(http, sim, two_lines(), path=path, token=token)
    fault = orjson.loads(text)["fault"]
    assert (status, fault["code"], fault["message"]) == (401, code, message)
    assert fault["description"]
    assert sim.issued == []


async def test_production_token_works_on_the_production_path(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    status, _, text = await post(http, sim, two_lines(), path=POST, token=PRODUCTION_TOKEN)
    assert status == 200 and orjson.loads(text)["invoiceNumber"].startswith(SELLER)


WIRE_CASES = [case for case in CASES if case.over_the_wire]


@pytest.mark.parametrize("case", WIRE_CASES, ids=lambda case: case.name)
async def test_broken_invoices_get_the_same_code_from_the_simulator(
    http: aiohttp.ClientSession, sim: FbrSimulator, case: Case
) -> None:
    token = TOKEN_FOR[case.context.seller_ntn_cnic, case.context.environment]
    path = POST if case.context.environment == "production" else POST_SB
    # The simulator is told what the case's context knows: lists, originals, scenarios.
    sim.reference_data = case.context.reference_data
    for number, date in case.originals.items():
        sim.remember_invoice(number, case.context.seller_ntn_cnic, date)
    if case.context.assigned_scenarios is not None:
        sim.tokens[token] = replace(sim.tokens[token], scenarios=case.context.assigned_scenarios)
    status, _, text = await post(http, sim, to_fbr_json(case.invoice), path=path, token=token)
    assert status == 200
    answer = orjson.loads(text)
    assert "invoiceNumber" not in answer
    verdict = answer["validationResponse"]
    if case.path.startswith("items["):
        index = int(case.path[6 : case.path.index("]")])
        assert (verdict["statusCode"], verdict["status"]) == ("00", "Invalid")
        item = verdict["invoiceStatuses"][index]
        assert (item["statusCode"], item["status"], item["errorCode"]) == (
            "01",
            "Invalid",
            case.code,
        )
        assert item["invoiceNo"] is None and item["error"]
    else:
        assert (verdict["statusCode"], verdict["status"]) == ("01", "Invalid")
        assert (verdict["errorCode"], verdict["invoiceStatuses"]) == (case.code, None)
        assert (
            verdict["error"]
            == first_reported(validate_invoice(case.invoice, case.context), case.path).message
        )
    assert sim.issued == []
    assert sim.stats["postinvoicedata" + ("" if path == POST else "_sb"), "rejected"] == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("valueSalesExcludingST", "2000"),  # a number sent as text
        ("salesTaxApplicable", None),
        ("quantity", True),
        ("extraTax", None),
        ("discount", ""),
    ],
)
async def test_numbers_of_the_wrong_json_type_get_0300(
    http: aiohttp.ClientSession, sim: FbrSimulator, key: str, value: Any
) -> None:
    body = two_lines()
    body["items"][1][key] = value
    _, _, text = await post(http, sim, body)
    statuses = orjson.loads(text)["validationResponse"]["invoiceStatuses"]
    assert [s["errorCode"] for s in statuses] == ["", "0300"]
    assert key in statuses[1]["error"]


async def test_a_missing_required_number_gets_0300(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    body = two_lines()
    del body["items"][0]["salesTaxWithheldAtSource"]
    _, _, text = await post(http, sim, body)
    statuses = orjson.loads(text)["validationResponse"]["invoiceStatuses"]
    assert statuses[0]["errorCode"] == "0300"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
async def test_a_body_that_is_not_a_json_object_gets_400(
    http: aiohttp.ClientSession, sim: FbrSimulator, raw: bytes
) -> None:
    status, _, text = await post(http, sim, raw)
    assert status == 400
    assert orjson.loads(text)["validationResponse"]["statusCode"] == "01"
    assert sim.issued == []


# --- faults -------------------------------------------------------------------------------------


async def test_gateway_fault_is_a_wso2_503_and_issues_nothing(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.GATEWAY_5XX)
    status, _, text = await post(http, sim, two_lines())
    assert status == 503
    assert orjson.loads(text)["fault"]["code"] == 101503
    assert sim.issued == []


async def test_plain_500_and_html_200_issue_nothing(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.HTTP_500_PLAIN, Fault.HTML_200)
    status, headers, text = await post(http, sim, two_lines())
    assert (status, text) == (500, "Contact Administrator")
    status, headers, text = await post(http, sim, two_lines())
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert text.startswith("<!DOCTYPE html>")
    assert sim.issued == []


async def test_too_many_requests_says_when_to_retry(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.TOO_MANY_REQUESTS)
    status, headers, text = await post(http, sim, two_lines())
    assert (status, headers["Retry-After"]) == (429, "1")
    assert orjson.loads(text)["fault"]["code"] == 900802
    assert sim.issued == []


async def test_scripted_faults_apply_in_order_then_normal_service_resumes(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.GATEWAY_5XX, Fault.TOO_MANY_REQUESTS)
    statuses = [(await post(http, sim, two_lines()))[0] for _ in range(3)]
    assert statuses == [503, 429, 200]
    assert sim.faults_applied == {Fault.GATEWAY_5XX: 1, Fault.TOO_MANY_REQUESTS: 1}


async def test_accept_then_hang_times_the_client_out_after_issuing(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    body = two_lines()
    sim.script(Fault.ACCEPT_THEN_HANG)
    with pytest.raises(TimeoutError):
        await post(http, sim, body, headers={"X-Hub-Invoice-Id": "hung"}, timeout=0.3)
    assert sim.issued_count("hung") == 1
    # Stopping must not wait for the hung handler.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sim.stop()
    assert loop.time() - started < 0.9


async def test_stop_drops_a_request_that_is_still_hanging(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.ACCEPT_THEN_HANG)
    request = asyncio.create_task(post(http, sim, two_lines()))
    while not sim.issued:  # the number is issued before the hang starts
        await asyncio.sleep(0.005)
    await sim.stop()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await request


async def test_accept_then_drop_closes_the_connection_after_issuing(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.ACCEPT_THEN_DROP)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, sim, two_lines(), headers={"X-Hub-Invoice-Id": "dropped"})
    assert sim.issued_count("dropped") == 1


async def test_accept_then_500_issues_a_number_behind_a_bare_500(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.ACCEPT_THEN_500)
    status, _, text = await post(http, sim, two_lines(), headers={"X-Hub-Invoice-Id": "x"})
    assert (status, text) == (500, "Contact Administrator")
    assert sim.issued_count("x") == 1


async def test_trailing_comma_answer_is_lenient_json_with_the_number(
    http: aiohttp.ClientSession, sim: FbrSimulator
) -> None:
    sim.script(Fault.TRAILING_COMMA)
    status, _, text = await post(http, sim, two_lines())
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    answer = orjson.loads(re.sub(r",\s*([}\]])", r"\1", text))
    (issued,) = sim.issued
    assert answer["invoiceNumber"] == issued.invoice_number
    assert [s["itemSNo"] for s in answer["validationResponse"]["invoiceStatuses"]] == [1, 2]


async def test_random_gateway_faults_follow_the_seed(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        simulator = FbrSimulator(tokens=TOKENS, error_rate=0.5, seed=42, clock=lambda: NOW)
        await simulator.start()
        try:
            runs.append([(await post(http, simulator, two_lines()))[0] for _ in range(16)])
        finally:
            await simulator.stop()
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


async def test_scripted_faults_take_precedence_over_random_ones(
    http: aiohttp.ClientSession,
) -> None:
    simulator = FbrSimulator(tokens=TOKENS, error_rate=1.0, clock=lambda: NOW)
    await simulator.start()
    try:
        simulator.script(Fault.TOO_MANY_REQUESTS)
        assert (await post(http, simulator, two_lines()))[0] == 429
        assert (await post(http, simulator, two_lines()))[0] == 503
    finally:
        await simulator.stop()


async def test_latency_delays_every_answer(http: aiohttp.ClientSession, sim: FbrSimulator) -> None:
    sim.latency = 0.05
    loop = asyncio.get_running_loop()
    started = loop.time()
    await post(http, sim, two_lines())
    assert loop.time() - started >= 0.05


# --- command line ------------------------------------------------------------------------------


def test_parse_token_defaults_to_the_sandbox() -> None:
    assert parse_token("abc=8885801") == ("abc", TokenGrant("8885801", "sandbox"))
    assert parse_token("abc=8885801:production") == ("abc", TokenGrant("8885801", "production"))
    for bad in ("abc", "=8885801", "abc=", "abc=8885801:staging"):
        with pytest.raises(argparse.ArgumentTypeError, match="TOKEN=NTN"):
            parse_token(bad)


async def test_command_line_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "clients.fbr_simulator", "--port", "0"),
        *("--token", f"{SANDBOX_TOKEN}={SELLER}:sandbox"),
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
            async with http.post(
                url + VALIDATE_SB,
                json=two_lines(),
                headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
            ) as response:
                assert response.status == 200
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
