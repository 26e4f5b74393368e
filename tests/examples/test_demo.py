"""The one-command demo works end to end: real simulator and hub processes, real gRPC."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FBR_NUMBER = re.compile(r"\b\d{7}DI\d{13}\b")


def _count(row: str, output: str) -> int:
    found = re.search(rf"{row}\W+(\d+)", output)
    assert found is not None, output
    return int(found.group(1))


def test_demo_tells_the_whole_story_and_exits_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBRHUB_")}
    work_dir = tmp_path / "demo"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "examples.demo", "--keep"),
            *("--invoices", "120", "--timeout", "40", "--work-dir", str(work_dir)),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=85,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Demo OK" in result.stdout, output
    assert _count("Accepted by FBR", result.stdout) > 0
    assert FBR_NUMBER.search(result.stdout), output
    # 120 invoices rotate through every sandbox scenario; each had one accepted.
    assert _count("Scenarios exercised", result.stdout) == 28
    assert _count("POS fiscal numbers", result.stdout) > 0
    assert "Rs 1.00" in result.stdout, output
    assert re.search(r"Debit note\W+1 .*links both ways", result.stdout), output
    assert _count("QR codes written", result.stdout) == 3
    # --keep: the print files stay in the work dir, and the summary names them.
    pngs = sorted((work_dir / "print").glob("*.png"))
    svgs = sorted((work_dir / "print").glob("*.svg"))
    assert len(pngs) == len(svgs) == 3, output
    for png in pngs:
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), png
        assert str(png) in result.stdout
    for svg in svgs:
        assert b"<svg" in svg.read_bytes(), svg
    assert "fbrhub serve" in result.stdout  # tells the user how to run the hub alone
