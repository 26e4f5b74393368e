"""Child processes (server.processes): environment, readiness, early exits, SIGTERM then SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from server.processes import (
    HOST,
    ChildFailed,
    ChildProcess,
    child_env,
    free_port,
    spawn_hub,
    spawn_simulator,
)

# Ignores SIGTERM, then listens on the port given as its argument until killed.
STUBBORN = """
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(120)
"""


def test_child_env_drops_our_hub_settings_and_adds_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FBRHUB_DATABASE_URL", "sqlite+aiosqlite:///parent.db")
    monkeypatch.setenv("FBRHUB_LOG_LEVEL", "DEBUG")
    env = child_env({"log_level": "WARNING", "forwarder_concurrency": 8})
    assert "FBRHUB_DATABASE_URL" not in env
    assert env["FBRHUB_LOG_LEVEL"] == "WARNING"
    assert env["FBRHUB_FORWARDER_CONCURRENCY"] == "8"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == os.environ["PATH"]


async def test_simulator_child_serves_until_sigterm(tmp_path: Path) -> None:
    simulator = spawn_simulator(tmp_path / "sim.log", ["tok=7000007:sandbox"], latency=0.01)
    try:
        await simulator.wait_port()
        assert simulator.alive()
        assert os.getsid(simulator.pid) == simulator.pid  # its own session
        assert simulator.rss_bytes() > 1_000_000
        async with httpx.AsyncClient(base_url=simulator.url) as http:
            stats = (await http.get("/__sim/stats")).json()
        assert stats["issued"] == 0
    finally:
        code = await simulator.stop(timeout=10)
    assert code == 0, simulator.tail()
    assert not simulator.alive()
    assert "FBR simulator listening on" in simulator.tail()


async def test_hub_that_exits_early_fails_with_its_log_tail(tmp_path: Path) -> None:
    hub = spawn_hub(tmp_path / "hub.log", {"environment": "staging"})
    with pytest.raises(ChildFailed, match=r"the hub exited early \(code [1-9]") as failed:
        await hub.wait_serving(timeout=30)
    # The settings error, from the log: one line, exit code 2, no traceback.
    assert "(code 2)" in str(failed.value)
    tail = str(failed.value).split(":\n", 1)[1].strip()
    assert tail.startswith("error: invalid settings: FBRHUB_ENVIRONMENT") and "\n" not in tail


async def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    port = free_port()
    child = ChildProcess.start(
        [sys.executable, "-c", STUBBORN, str(port)],
        tmp_path / "stubborn.log",
        child_env(),
        name="stubborn child",
        address=f"{HOST}:{port}",
    )
    try:
        await child.wait_port()
        assert await child.stop(timeout=0.5) == -signal.SIGKILL
    finally:
        child.kill()


async def test_waiting_gives_up_after_the_timeout(tmp_path: Path) -> None:
    child = ChildProcess.start(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        tmp_path / "silent.log",
        child_env(),
        name="silent child",
        address=f"{HOST}:{free_port()}",
    )
    try:
        with pytest.raises(ChildFailed, match="the silent child not ready after 1 s"):
            await child.wait_port(timeout=1.0)
        assert child.alive()
    finally:
        assert child.kill() == -signal.SIGKILL
    assert child.tail() == "(no output)"
