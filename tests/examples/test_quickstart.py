"""The README's SDK quick start runs unchanged against the hub `make demo --serve` leaves up.

The code is taken from the README as it stands, run in a fresh interpreter (the SDK is
installed in the test's environment), twice: the second run must find the same invoice and
FBR number, idempotent by `erp_reference`. The Python blocks of docs/integrating.md must at
least compile.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.examples.toolchains import REPO_ROOT

PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
ACCEPTED = re.compile(r"^INV-0001 INVOICE_STATE_ACCEPTED (7000007DI\d{13}) \[\]$", re.MULTILINE)
READY_SECONDS = 80


def readme_quick_start() -> str:
    """The first Python block of the README's SDK quick start."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Python SDK quick start") :]
    found = PYTHON_BLOCK.search(section)
    assert found is not None
    return found.group(1)


def _wait_for(path: Path, demo: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + READY_SECONDS
    while not path.exists():
        assert demo.poll() is None, "the demo stopped before serving"
        assert time.monotonic() < deadline, "the demo did not start serving in time"
        time.sleep(0.2)
    return path.read_text()


def test_the_readme_quick_start_runs_against_the_demo_hub(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBRHUB_")}
    work_dir = tmp_path / "demo"
    argv = [sys.executable, "-m", "examples.demo", "--serve", "--work-dir", str(work_dir)]
    demo = subprocess.Popen(
        [*argv, "--invoices", "60", "--timeout", "40"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        exports = _wait_for(work_dir / "hub.env", demo)
        settings = dict(re.findall(r"(HUB_\w+)=(\S+)", exports))
        code = readme_quick_start()
        runs = [
            subprocess.run(
                [sys.executable, "-c", code],
                cwd=tmp_path,
                env={**env, **settings},
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
            for _ in range(2)
        ]
    finally:
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=60)
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    numbers = [ACCEPTED.search(run.stdout) for run in runs]
    assert all(numbers), [run.stdout for run in runs]
    assert numbers[0].group(1) == numbers[1].group(1)  # type: ignore[union-attr]
    assert demo.returncode == 0, output
    assert "Demo OK" in output and "export HUB_ADDRESS=" in output


def test_the_python_in_the_integration_guide_compiles() -> None:
    guide = (REPO_ROOT / "docs" / "integrating.md").read_text()
    blocks = PYTHON_BLOCK.findall(guide)
    assert len(blocks) >= 3
    for number, block in enumerate(blocks):
        compile(block, f"docs/integrating.md block {number}", "exec")
