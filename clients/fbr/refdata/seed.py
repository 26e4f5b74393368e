"""Build ``seed.json``, the reference snapshot shipped with the package.

Run ``python -m clients.fbr.refdata.seed > clients/fbr/refdata/seed.json`` after changing
:mod:`clients.fbr.reference` or the sample scenarios; a test checks the two agree.

Where the values come from (docs/fbr-coverage.md §3, §4):

- Ids FBR documents are used as they are: provinces PUNJAB 7 and SINDH 8, doc types 4 and 9,
  uoM_ID 13 "KG" and 77 "Square Metre", transaction type 82 "DTRE goods" (87 and 111 added as
  in the spec), rate 734 "18% along with rupees 60 per kilogram" and 280 "0%", SRO 389 with
  item 17853 "50", SroSchedule 7 "Zero Rated Gas" / 8 "5th Schedule" for rate 413.
- Every other id is **assumed** (numbered from 9000 up, or in the provinces' gap), so that a
  synced snapshot is never mistaken for the seed. Rules compare texts, and units for an HS
  code by id within one snapshot, so assumed ids never meet FBR's.
- Names and rate texts: :mod:`clients.fbr.reference` ([CSV], [SCN]); HS codes: the samples'
  products and the spec's examples; SRO schedules and serials: PRAL's scenario samples.
- ``complete`` marks the lists the rules may treat as whole. Provinces, units, doc types,
  transaction types and SaleTypeToRate (the offline rate table the hub always enforced) are;
  the HS code, HS_UOM, SRO schedule and SRO item lists are samples of FBR's and are not.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from clients.fbr import reference, samples
from clients.fbr.refdata.snapshot import SNAPSHOT_FORMAT

_PROVINCE_CODES = {
    "AZAD JAMMU AND KASHMIR": 1,
    "BALOCHISTAN": 2,
    "CAPITAL TERRITORY": 3,
    "GILGIT BALTISTAN": 4,
    "KHYBER PAKHTUNKHWA": 5,
    "PUNJAB": 7,  # [SPEC p.23]
    "SINDH": 8,  # [SPEC p.23]
    "FATA/PATA": 9,
}
_KNOWN_UOM_IDS = {"KG": 13, "Square Metre": 77}
_KNOWN_TRANS_TYPES = {
    "DTRE goods": 82,
    "Special procedure cottonseed": 87,
    "Electricity Supplied to marble/granite industry": 111,
}
_KNOWN_RATE_IDS = {
    ("Potassium Chlorate", "18% along with rupees 60 per kilogram"): 734,
    ("Goods at zero-rate", "0%"): 280,
}
_SPEC_HS_CODES = {
    "8432.1010": "NO-TILL DIRECT SEEDING MACHINE",  # [SPEC p.25]
    "0101.2100": "PURE-BRED BREEDING HORSES",  # [SPEC p.11]
    "5904.9000": "FLOOR COVERINGS ON A TEXTILE BACKING",  # [SPEC p.31]
    "8805.2100": "AIR COMBAT SIMULATORS AND PARTS",  # [ERR 0101]
}
# HS codes whose unit the samples or the spec fix: code -> unit texts.
_HS_UNITS = {
    "5904.9000": ("Square Metre",),  # [SPEC p.31], answered there as "Square Meter"
    "2829.1990": ("KG",),  # potassium chlorate, [ERR 0097]
    "7214.1010": ("MT",),  # steel, [ERR 0062]
    "7204.4990": ("MT",),
    "7214.9990": ("MT",),
}


def _rate_value(text: str) -> float:
    parts = reference.rate_components(text)
    if parts is None:
        return 0.0
    return float(parts.percent if parts.percent is not None else parts.per_unit or 0)


def build_seed() -> dict[str, Any]:
    """The seed snapshot as a dict (see :mod:`clients.fbr.refdata.snapshot` for the layout)."""
    uom_ids, trans_ids, hs_codes = _ids()
    rate_ids, sale_type_to_rate = _sale_type_rates(trans_ids)
    sro_schedule, sro_item, sro_item_codes = _sro_lists(rate_ids)
    return {
        "format": SNAPSHOT_FORMAT,
        "source": "seed",
        "fetched_on": "2025-07-24",
        "complete": {
            "provinces": True,
            "doctypecode": True,
            "itemdesccode": False,
            "sroitemcode": False,
            "transtypecode": True,
            "uom": True,
            "SaleTypeToRate": True,
            "SroSchedule": False,
            "SROItem": False,
            "HS_UOM": False,
        },
        "notes": "Built by clients.fbr.refdata.seed (see docs/fbr-coverage.md); ids other than "
        "those the spec documents are assumed (9000 and up).",
        "provinces": [
            {"stateProvinceCode": code, "stateProvinceDesc": name}
            for name, code in sorted(_PROVINCE_CODES.items(), key=lambda kv: kv[1])
        ],
        "doctypecode": [
            {"docTypeId": 4, "docDescription": "Sale Invoice"},
            {"docTypeId": 9, "docDescription": "Debit Note"},
        ],
        "itemdesccode": [{"hS_CODE": c, "description": d} for c, d in sorted(hs_codes.items())],
        "sroitemcode": sro_item_codes,
        "transtypecode": [
            {"transactioN_TYPE_ID": i, "transactioN_DESC": t}
            for t, i in sorted(trans_ids.items(), key=lambda kv: kv[1])
        ],
        "uom": [
            {"uoM_ID": i, "description": t}
            for t, i in sorted(uom_ids.items(), key=lambda kv: kv[1])
        ],
        "SaleTypeToRate": sale_type_to_rate,
        "SroSchedule": sro_schedule,
        "SROItem": sro_item,
        "HS_UOM": _hs_units(uom_ids),
        **_registration_answers(),
    }


def _ids() -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    """Unit, transaction-type and HS-code tables: FBR's documented ids, assumed ones after."""
    uom_ids = dict(_KNOWN_UOM_IDS)
    for number, text in enumerate(reference.UNITS_OF_MEASURE, start=9000):
        uom_ids.setdefault(text, number)
    trans_ids = dict(_KNOWN_TRANS_TYPES)
    for number, sale_type in enumerate(reference.SALE_TYPES, start=9100):
        trans_ids.setdefault(sale_type.name, number)
    hs_codes = dict(_SPEC_HS_CODES)
    for profile in samples.scenario_profiles().values():
        for hs_code, description, _, _ in profile.products:
            hs_codes.setdefault(hs_code, description.upper())

    return uom_ids, trans_ids, hs_codes


def _sale_type_rates(
    trans_ids: dict[str, int],
) -> tuple[dict[tuple[str, str], int], list[dict[str, Any]]]:
    """Rate ids per (sale type, rate text), and FBR's SaleTypeToRate list."""
    rate_ids: dict[tuple[str, str], int] = {}
    next_rate = 9200
    sale_type_to_rate: list[dict[str, Any]] = []
    for sale_type in reference.SALE_TYPES:
        rates = []
        for text in sorted(sale_type.rates):
            rate_id = _KNOWN_RATE_IDS.get((sale_type.name, text))
            if rate_id is None:
                rate_id, next_rate = next_rate, next_rate + 1
            rate_ids[sale_type.name, text] = rate_id
            rates.append({"ratE_ID": rate_id, "ratE_DESC": text, "ratE_VALUE": _rate_value(text)})
        if rates:
            sale_type_to_rate.append(
                {
                    "transTypeId": trans_ids[sale_type.name],
                    "originationSupplier": None,
                    "date": None,
                    "rates": rates,
                }
            )

    return rate_ids, sale_type_to_rate


def _sro_lists(
    rate_ids: dict[tuple[str, str], int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """SroSchedule, SROItem and sroitemcode as PRAL's samples use them."""
    # SRO schedules and serials as PRAL's samples use them, per (sale type, rate).
    sro_ids: dict[str, int] = {}
    schedules: dict[int, dict[str, int]] = {}
    serials: dict[int, set[str]] = {}
    for scenario_id, profile in samples.scenario_profiles().items():
        if not profile.sro_schedule_no:
            continue
        sale_type_name = reference.scenario_sale_type(scenario_id) or ""
        sro_id = sro_ids.setdefault(profile.sro_schedule_no, 9300 + len(sro_ids))
        rate_id = rate_ids[sale_type_name, profile.rate]
        schedules.setdefault(rate_id, {})[profile.sro_schedule_no] = sro_id
        serials.setdefault(sro_id, set()).add(profile.sro_item_serial_no)
    sro_schedule: list[dict[str, Any]] = [
        {"rate_id": 413, "origination_supplier_csv": 1, "date": "04-Feb-2024",
         "schedules": [{"srO_ID": 7, "srO_DESC": "Zero Rated Gas"},
                       {"srO_ID": 8, "srO_DESC": "5th Schedule"}]},
    ]  # fmt: skip
    for rate_id, by_text in sorted(schedules.items()):
        sro_schedule.append(
            {
                "rate_id": rate_id,
                "origination_supplier_csv": None,
                "date": None,
                "schedules": [{"srO_ID": i, "srO_DESC": t} for t, i in sorted(by_text.items())],
            }
        )
    sro_item: list[dict[str, Any]] = [
        {"sro_id": 389, "date": "2025-03-25",
         "items": [{"srO_ITEM_ID": 17853, "srO_ITEM_DESC": "50"}]},
    ]  # fmt: skip
    item_ids = iter(range(9400, 10000))
    for sro_id, found in sorted(serials.items()):
        items = [{"srO_ITEM_ID": next(item_ids), "srO_ITEM_DESC": s} for s in sorted(found)]
        sro_item.append({"sro_id": sro_id, "date": None, "items": items})
    sro_item_codes = [{"srO_ITEM_ID": 724, "srO_ITEM_DESC": "9"}] + [
        item for entry in sro_item[1:] for item in entry["items"]
    ]
    return sro_schedule, sro_item, sro_item_codes


def _hs_units(uom_ids: dict[str, int]) -> list[dict[str, Any]]:
    """HS_UOM: the units FBR allows for the HS codes whose units the sources give."""
    return [
        {
            "hs_code": code,
            "annexure_id": 3,
            "uoms": [
                {
                    "uoM_ID": uom_ids[text],
                    "description": "Square Meter" if uom_ids[text] == 77 else text,
                }
                for text in units
            ],
        }
        for code, units in sorted(_HS_UNITS.items())
    ]


def _registration_answers() -> dict[str, Any]:
    """STATL and Get_Reg_Type answers for the registration numbers the samples use."""
    return {
        "STATL": [
            {
                "regno": "0788762",
                "date": "2025-05-18",
                "response": {"status code": "01", "status": "In-Active"},
            },
            {
                "regno": "2046004",
                "date": None,
                "response": {"status code": "01", "status": "Active"},
            },
            {
                "regno": "8885801",
                "date": None,
                "response": {"status code": "01", "status": "Active"},
            },
        ],
        "Get_Reg_Type": [
            {
                "Registration_No": regno,
                "response": {
                    "statuscode": "00",
                    "REGISTRATION_NO": regno,
                    "REGISTRATION_TYPE": "Registered",
                },
            }
            for regno in ("0788762", "2046004", "7000006", "8885801")
        ],
    }


def seed_json() -> str:
    """``build_seed()`` as the text of ``seed.json``."""
    return json.dumps(build_seed(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(seed_json())
