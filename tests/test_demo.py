"""The one-command demo works end to end: real simulator and hub processes, real gRPC."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FBR_NUMBER = re.compile(r"\b\d{7}DI\d{13}\b")


def test_demo_delivers_invoices_to_fbr_and_exits_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBRHUB_")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "server.demo"),
            *("--invoices", "120", "--timeout", "40", "--work-dir", str(tmp_path / "demo")),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Demo OK" in result.stdout, output
    accepted = re.search(r"Accepted by FBR\W+(\d+)", result.stdout)
    assert accepted is not None and int(accepted.group(1)) > 0, output
    assert FBR_NUMBER.search(result.stdout), output
    assert "fbrhub serve" in result.stdout  # tells the user how to run the hub alone
