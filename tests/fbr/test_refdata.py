"""Reference data: the seed, the snapshot reader, and the client against the simulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from importlib import resources

import pytest

from clients.fbr import reference
from clients.fbr.refdata import SnapshotReferenceData, load_seed, seed_reference_data
from clients.fbr.refdata.client import ReferenceDataClient, ReferenceDataError
from clients.fbr.refdata.seed import seed_json
from clients.fbr.refdata.snapshot import format_dd_mmm_yyyy, parse_reference_date
from clients.fbr.samples import SCENARIO_IDS, scenario_profiles
from clients.fbr_simulator import FbrSimulator, TokenGrant

DAY = dt.date(2025, 5, 13)
TOKEN = "sandbox-8885801"


def test_the_shipped_seed_is_what_the_builder_makes() -> None:
    shipped = resources.files("clients.fbr.refdata").joinpath("seed.json").read_text("utf-8")
    assert shipped == seed_json(), "run: python -m clients.fbr.refdata.seed > .../seed.json"


def test_the_seed_knows_every_sample_and_uses_fbrs_field_names() -> None:
    seed = load_seed()
    assert seed["provinces"][0].keys() == {"stateProvinceCode", "stateProvinceDesc"}
    assert seed["itemdesccode"][0].keys() == {"hS_CODE", "description"}
    assert seed["uom"][0].keys() == {"uoM_ID", "description"}
    assert seed["transtypecode"][0].keys() == {"transactioN_TYPE_ID", "transactioN_DESC"}
    assert seed["SaleTypeToRate"][0]["rates"][0].keys() == {"ratE_ID", "ratE_DESC", "ratE_VALUE"}
    data = seed_reference_data()
    for scenario in SCENARIO_IDS:
        profile = scenario_profiles()[scenario]
        sale_type = reference.scenario_sale_type(scenario) or ""
        assert data.is_sale_type(sale_type)
        rates = data.rates(sale_type, "PUNJAB", DAY)
        assert rates is not None and profile.rate in rates
        assert data.uom_id(profile.uom) is not None
        assert all(data.hs_code_exists(p[0]) for p in profile.products)
    assert data.province_code("Sindh") == 8 and data.province_code("Karachi") is None
    assert data.uom_id("KG") == 13 and data.uom_id("kg") is None


def test_partial_lists_never_refuse_by_absence() -> None:
    data = seed_reference_data()
    assert data.hs_code_exists("9999.9999") is None  # the seed's HS list is partial
    assert data.hs_uoms("8516.4000") is None
    # HS_UOM says "Square Meter", the unit list "Square Metre": matched by id.
    assert data.hs_uoms("5904.9000") == {77: "Square Metre"}


def test_dated_entries_apply_from_their_date() -> None:
    snapshot = load_seed()
    first = snapshot["SaleTypeToRate"][0]
    older = {
        **first,
        "originationSupplier": 7,
        "date": "01-Jan-2025",
        "rates": [{"ratE_ID": 1, "ratE_DESC": "17%", "ratE_VALUE": 17}],
    }
    newer = {
        **older,
        "date": "01-Jul-2025",
        "rates": [{"ratE_ID": 2, "ratE_DESC": "18%", "ratE_VALUE": 18}],
    }
    snapshot["SaleTypeToRate"] = [older, newer]  # fmt: skip
    data = SnapshotReferenceData(snapshot)
    name = "Goods at standard rate (default)"
    assert data.rates(name, "PUNJAB", dt.date(2025, 5, 1)) == {"17%": 1}
    assert data.rates(name, "punjab", dt.date(2025, 8, 1)) == {"18%": 2}
    assert data.rates(name, "PUNJAB", dt.date(2024, 12, 31)) is None
    assert data.rates(name, "SINDH", dt.date(2025, 8, 1)) is None  # only Punjab is known


def test_reference_dates_in_both_formats() -> None:
    assert parse_reference_date("04-Feb-2024") == dt.date(2024, 2, 4)
    assert parse_reference_date("2025-03-25") == dt.date(2025, 3, 25)
    assert parse_reference_date("31-Foo-2024") is None
    assert format_dd_mmm_yyyy(dt.date(2024, 2, 24)) == "24-Feb-2024"


def test_an_unknown_snapshot_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        SnapshotReferenceData({"format": 99})


@pytest.fixture
async def sim() -> AsyncIterator[FbrSimulator]:
    simulator = FbrSimulator(tokens={TOKEN: TokenGrant("8885801", "production")})
    await simulator.start()
    yield simulator
    await simulator.stop()


async def test_sync_against_the_simulator_rebuilds_the_seeds_answers(sim: FbrSimulator) -> None:
    async with ReferenceDataClient(token=TOKEN, base_url=sim.base_url) as client:
        snapshot = await client.fetch_snapshot(on=DAY, hs_codes_for_uom=["5904.9000", "2829.1990"])
        assert (await client.simple_list("provinces"))[5] == {
            "stateProvinceCode": 7,
            "stateProvinceDesc": "PUNJAB",
        }
        assert await client.registration_type(registration_no="2046004") == {
            "statuscode": "00",
            "REGISTRATION_NO": "2046004",
            "REGISTRATION_TYPE": "Registered",
        }
        assert (await client.registration_type(registration_no="1234567"))["statuscode"] == "01"
        assert await client.statl(regno="0788762", date=dt.date(2025, 5, 18)) == {
            "status code": "01",
            "status": "In-Active",
        }
        assert await client.sro_item(date=dt.date(2025, 3, 25), sro_id=389) == [
            {"srO_ITEM_ID": 17853, "srO_ITEM_DESC": "50"}
        ]
    synced = SnapshotReferenceData(snapshot)
    seed = seed_reference_data()
    assert snapshot["source"] == "fbr" and snapshot["complete"]["SROItem"] is True
    for scenario in SCENARIO_IDS:
        sale_type = reference.scenario_sale_type(scenario) or ""
        for province in ("PUNJAB", "SINDH"):
            assert synced.rates(sale_type, province, DAY) == seed.rates(sale_type, province, DAY)
    assert synced.hs_uoms("2829.1990") == {13: "KG"}
    assert synced.hs_code_exists("9999.9999") is False  # a synced HS list is whole


async def test_a_bad_token_fails_the_sync(sim: FbrSimulator) -> None:
    async with ReferenceDataClient(token="nope", base_url=sim.base_url) as client:
        with pytest.raises(ReferenceDataError, match="HTTP 401"):
            await client.simple_list("uom")
