"""The 28 sandbox scenarios and debit notes, locally and against the simulator over HTTP."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from clients.fbr.client import FbrClient
from clients.fbr.payload import to_fbr_json
from clients.fbr.responses import OutcomeKind
from clients.fbr.rules import ValidationContext, validate_invoice
from clients.fbr.samples import SCENARIO_IDS, SellerInfo, scenario_invoice
from clients.fbr_simulator import FbrSimulator, TokenGrant

SELLER = SellerInfo("8885801", "Mehran Appliances", "SINDH", "Plot 7, Korangi, Karachi")
TODAY = dt.date(2025, 5, 13)
NOW = dt.datetime(2025, 5, 13, 7, 0, tzinfo=dt.UTC)  # 12:00 PKT
ALL = "all-scenarios"
MANUFACTURER = "manufacturer"
PRODUCTION = "production"
# Manufacturer x All Other Sectors [SPEC §10 p.47].
MANUFACTURER_SCENARIOS = frozenset(
    {"SN001", "SN002", "SN005", "SN006", "SN007", "SN015", "SN016", "SN017", "SN021", "SN022",
     "SN024"}
)  # fmt: skip
TOKENS = {
    ALL: TokenGrant(SELLER.ntn_cnic, "sandbox"),
    MANUFACTURER: TokenGrant(SELLER.ntn_cnic, "sandbox", scenarios=MANUFACTURER_SCENARIOS),
    PRODUCTION: TokenGrant(SELLER.ntn_cnic, "production"),
}


@pytest.fixture
async def sim() -> AsyncIterator[FbrSimulator]:
    simulator = FbrSimulator(tokens=TOKENS, clock=lambda: NOW)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: FbrSimulator) -> AsyncIterator[FbrClient]:
    async with FbrClient(base_url=sim.base_url, transport=None) as fbr:
        yield fbr


def sample(scenario: str, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(f"{scenario}-{seed}")
    return scenario_invoice(
        scenario, seller=SELLER, erp_reference="ERP-1", invoice_date=TODAY, rng=rng
    )


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
async def test_every_scenario_validates_locally_and_is_accepted_by_the_sandbox(
    scenario: str, sim: FbrSimulator, client: FbrClient
) -> None:
    invoice = sample(scenario)
    context = ValidationContext(today=TODAY, environment="sandbox", seller_ntn_cnic="8885801")
    assert validate_invoice(invoice, context) == []
    outcome = await client.post_invoice(to_fbr_json(invoice), token=ALL, environment="sandbox")
    assert outcome.kind is OutcomeKind.ACCEPTED, outcome
    assert outcome.fbr_invoice_number.startswith("8885801DI")


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
async def test_a_scenario_not_assigned_to_the_seller_gets_0203(
    scenario: str, sim: FbrSimulator, client: FbrClient
) -> None:
    assigned = frozenset(SCENARIO_IDS) - {scenario}
    sim.tokens[MANUFACTURER] = TokenGrant(SELLER.ntn_cnic, "sandbox", scenarios=assigned)
    body = to_fbr_json(sample(scenario))
    outcome = await client.post_invoice(body, token=MANUFACTURER, environment="sandbox")
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.REJECTED, "0203")
    assert sim.issued == []


async def test_the_assigned_set_is_per_token(sim: FbrSimulator, client: FbrClient) -> None:
    accepted = {
        scenario
        for scenario in SCENARIO_IDS
        if (
            await client.post_invoice(
                to_fbr_json(sample(scenario)), token=MANUFACTURER, environment="sandbox"
            )
        ).kind
        is OutcomeKind.ACCEPTED
    }
    assert accepted == MANUFACTURER_SCENARIOS


async def test_a_sale_type_not_matching_the_scenario_gets_0204(client: FbrClient) -> None:
    invoice = sample("SN005")
    invoice["scenario_id"] = "SN001"
    outcome = await client.post_invoice(to_fbr_json(invoice), token=ALL, environment="sandbox")
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.REJECTED, "0204")


async def test_production_never_takes_a_scenario_id(client: FbrClient) -> None:
    invoice = sample("SN001")
    rejected = await client.post_invoice(
        to_fbr_json(invoice), token=PRODUCTION, environment="production"
    )
    assert (rejected.kind, rejected.error_code) == (OutcomeKind.REJECTED, "0203")
    invoice["scenario_id"] = ""
    body = to_fbr_json(invoice)
    assert "scenarioId" not in body
    accepted = await client.post_invoice(body, token=PRODUCTION, environment="production")
    assert accepted.kind is OutcomeKind.ACCEPTED


# --- debit notes ---------------------------------------------------------------------------


def debit_note(original_number: str, date: dt.date) -> dict[str, Any]:
    note = sample("SN001", seed=9)
    note.update(
        invoice_type="Debit Note",
        invoice_ref_no=original_number,
        invoice_date=date.isoformat(),
        scenario_id="",
    )
    return to_fbr_json(note)


async def test_a_debit_note_cites_an_invoice_the_sandbox_accepted(
    sim: FbrSimulator, client: FbrClient
) -> None:
    original = sample("SN001")
    original["invoice_date"] = "2025-05-01"
    first = await client.post_invoice(to_fbr_json(original), token=ALL, environment="sandbox")
    assert first.kind is OutcomeKind.ACCEPTED
    number = first.fbr_invoice_number
    cases = [
        (debit_note(number, TODAY), OutcomeKind.ACCEPTED, ""),
        (debit_note(number, dt.date(2025, 4, 30)), OutcomeKind.REJECTED, "0029"),
        (debit_note("8885801DI0000000000001", TODAY), OutcomeKind.REJECTED, "0057"),
        (debit_note(number[:-1], TODAY), OutcomeKind.REJECTED, "0026"),
    ]
    for body, kind, code in cases:
        outcome = await client.post_invoice(body, token=ALL, environment="sandbox")
        assert (outcome.kind, outcome.error_code) == (kind, code), body["invoiceDate"]


async def test_a_debit_note_more_than_180_days_late_gets_0034(
    sim: FbrSimulator, client: FbrClient
) -> None:
    number = "8885801DI1700000000000"
    sim.remember_invoice(number, "8885801", TODAY - dt.timedelta(days=181))
    late = await client.post_invoice(debit_note(number, TODAY), token=ALL, environment="sandbox")
    assert (late.kind, late.error_code) == (OutcomeKind.REJECTED, "0034")
    sim.remember_invoice(number, "8885801", TODAY - dt.timedelta(days=180))
    on_time = await client.post_invoice(debit_note(number, TODAY), token=ALL, environment="sandbox")
    assert on_time.kind is OutcomeKind.ACCEPTED


async def test_another_sellers_invoice_is_not_an_original(
    sim: FbrSimulator, client: FbrClient
) -> None:
    sim.remember_invoice("7000007DI1747119701593", "7000007", TODAY)
    body = debit_note("7000007DI1747119701593", TODAY)
    outcome = await client.post_invoice(body, token=ALL, environment="sandbox")
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.REJECTED, "0057")
    assert orjson.dumps(body)  # the body itself is plain JSON
