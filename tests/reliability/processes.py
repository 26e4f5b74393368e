"""Real hub processes for reliability tests and benchmarks: start, wait, measure, kill.

A :class:`HubProcess` is ``python -m server.commands serve`` (or another module with the same
settings contract) in its own session, configured only through ``FBRHUB_*`` variables, with
its output in a log file. Tests kill it with SIGKILL to simulate a crash, read its resident
memory from ``/proc``, and start it again on the same database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def child_env(settings: dict[str, object]) -> dict[str, str]:
    """The environment of a hub child: ours without ``FBRHUB_*``, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBRHUB_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"FBRHUB_{name.upper()}": str(value) for name, value in settings.items()})
    return env


@dataclass
class HubProcess:
    """A hub running as a separate OS process.

    Attributes:
        process: the child.
        address: ``host:port`` of its gRPC server.
        log: file holding its stdout and stderr.
    """

    process: subprocess.Popen[bytes]
    address: str
    log: Path

    @classmethod
    def start(
        cls,
        log: Path,
        settings: Mapping[str, object],
        *,
        module: str = "server.commands",
        args: tuple[str, ...] = ("serve",),
    ) -> HubProcess:
        """Start ``python -m <module> <args>`` with ``FBRHUB_<NAME>=value`` for each setting.

        ``grpc_listen`` defaults to a free local port; ``log_level`` to WARNING.
        """
        settings = dict(settings)
        settings.setdefault("grpc_listen", f"{HOST}:{free_port()}")
        settings.setdefault("log_level", "WARNING")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO_ROOT,
                env=child_env(settings),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(process, str(settings["grpc_listen"]), log)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The last lines of the child's output."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def rss_bytes(self) -> int:
        """The child's resident memory now."""
        return rss_bytes(self.pid)

    async def wait_serving(self, timeout: float = 60.0) -> None:
        """Poll the gRPC health service until the hub is SERVING.

        Raises:
            RuntimeError: the child exited, or did not serve within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if not self.alive():
                    raise RuntimeError(
                        f"hub exited early ({self.process.returncode}):\n{self.tail()}"
                    )
                try:
                    answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"hub not serving after {timeout:.0f} s:\n{self.tail()}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the child (a crash: nothing is flushed or recorded) and reap it."""
        if self.alive():
            self.process.kill()
        self.process.wait()

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; return the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.kill()
        return self.process.returncode
