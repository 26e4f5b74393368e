"""Settings and tenants: a bad value is one readable line and exit 2, never a broken tenant."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from server.access.accounts import hash_password, verify_password
from server.access.tenants import create_tenant
from server.db.engine import Database
from server.errors import InvalidField

GOOD = {
    "seller_ntn_cnic": "8885801",
    "business_name": "Seller",
    "province": "PUNJAB",
    "address": "1 Test Road, Lahore",
    "fbr_environment": "sandbox",
    "fbr_token": "sandbox-token-8885801",
}
BAD_TENANTS = [
    ("province", {"province": ""}),
    ("province", {"province": "Lahore"}),
    ("business_name", {"business_name": "  "}),
    ("address", {"address": ""}),
    ("fbr_token", {"fbr_token": ""}),
    ("fbr_token", {"fbr_token": "\U0001f600" * 500}),
    ("fbr_token", {"fbr_token": "token with spaces"}),
    ("seller_ntn_cnic", {"seller_ntn_cnic": "\u0661" * 7}),
    ("assigned_scenarios", {"assigned_scenarios": ["SN999"]}),
    ("assigned_scenarios", {"fbr_environment": "production", "assigned_scenarios": ["SN001"]}),
    ("pos_id", {"channel": "pos", "pos_id": ""}),
    ("pos_id", {"pos_id": "123"}),
]


@pytest.mark.parametrize(("field", "change"), BAD_TENANTS, ids=[f for f, _ in BAD_TENANTS])
async def test_tenant_create_refuses_what_fbr_would_refuse_every_invoice_for(
    db: Database, field: str, change: dict[str, object]
) -> None:
    with pytest.raises(InvalidField) as refused:
        await create_tenant(db, **{**GOOD, **change})  # type: ignore[arg-type]
    assert refused.value.path == field
    for value in change.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in refused.value.message


async def test_a_city_is_no_province_but_a_province_in_any_case_is() -> None:
    from server.access.tenants import NewTenant

    checked = NewTenant.checked(
        **{**GOOD, "province": "sindh"}, channel="di", pos_id="", assigned_scenarios=None
    )
    assert checked.province == "SINDH"


async def _cli(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    environ = {**os.environ, "FBRHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"}
    environ.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.commands",
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_settings_and_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = await _cli(
        tmp_path, "status", FBRHUB_ENVIRONMENT="production", FBRHUB_CURSOR_SECRET="x"
    )
    assert code == 2 and err.count("\n") == 1 and "FBRHUB_CURSOR_SECRET" in err
    assert "Traceback" not in err
    code, _, err = await _cli(tmp_path, "status", FBRHUB_FORWARDER_CONCURRENCY="zero")
    assert code == 2 and err.count("\n") == 1 and "FBRHUB_FORWARDER_CONCURRENCY" in err
    assert "zero" not in err  # values (maybe secrets) are never echoed
    await _cli(tmp_path, "migrate")
    code, _, err = await _cli(
        tmp_path,
        "tenant", "create", "--ntn", "8885801", "--name", "S", "--province", "Karachi",
        "--address", "A", "--fbr-token", "t0ken",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: province")
    assert "Karachi" not in err


async def test_a_long_password_counts_every_character() -> None:
    long_password = "correct horse battery staple " * 4  # 116 characters, over 72 bytes
    stored = await hash_password(long_password, 4)
    assert await verify_password(long_password, stored)
    assert not await verify_password(long_password[:72], stored)
    assert not await verify_password(long_password[:-1] + "!", stored)
    emoji = "\U0001f511" * 128  # 128 characters, 512 bytes
    assert await verify_password(emoji, await hash_password(emoji, 4))
    short = "twelve chars"
    assert await verify_password(short, await hash_password(short, 4))
