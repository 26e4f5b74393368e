"""``make audit``'s judgement: accepted findings need a reason and a date that has not passed."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fbrhub_audit", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fbrhub_audit"] = module
    spec.loader.exec_module(module)
    return module


def test_only_findings_accepted_with_a_current_review_date_pass(audit: ModuleType) -> None:
    today = dt.date(2027, 1, 1)
    finding = audit.Finding("ruff", ("S608",), "server/invoices/storage.py", "S608 storage")
    other = audit.Finding("pip-audit", ("PYSEC-1", "GHSA-x"), "pkg==1", "PYSEC-1")
    current = audit.Ignore(("S608",), ("server/*",), "constant names", dt.date(2027, 6, 30))
    result = audit.Result("code", [finding])
    assert audit.judge([result], [current], today) == 0
    expired = audit.Ignore(("S608",), ("server/*",), "constant names", dt.date(2026, 12, 31))
    assert audit.judge([result], [expired], today) == 1
    elsewhere = audit.Ignore(("S608",), ("clients/*",), "constant names", dt.date(2027, 6, 30))
    assert audit.judge([result], [elsewhere], today) == 1
    by_alias = audit.Ignore(("GHSA-x",), (), "not reachable", dt.date(2027, 6, 30))
    assert audit.judge([audit.Result("deps", [other])], [by_alias], today) == 0


def test_an_ignore_entry_needs_a_reason_and_a_review_date(
    audit: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "ignore.toml"
    path.write_text('[[ignore]]\nid = "S101"\nreason = ""\nreview_by = 2027-01-01\n')
    with pytest.raises(ValueError, match="reason"):
        audit.load_ignores(path)
    path.write_text('[[ignore]]\nid = "S101"\nreason = "why"\n')
    with pytest.raises(ValueError):
        audit.load_ignores(path)
    assert audit.load_ignores(SCRIPT.parent.parent / "audit-ignore.toml")


def test_an_unreachable_service_is_never_a_pass(
    audit: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    result = audit.Result("npm", unreachable="the endpoint did not answer")
    assert audit.judge([result], [], dt.date(2027, 1, 1)) == 0
    assert "NOT CHECKED" in capsys.readouterr().out
