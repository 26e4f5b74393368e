"""The hub and the FBR simulator as child OS processes: start, wait until ready, measure, stop.

The demo, the benchmarks and the tests that need a real hub process (SIGKILL, resident memory,
two hubs on one database, a graceful SIGTERM) start their children here. A
:class:`ChildProcess` runs in its own session, so a Ctrl-C in the parent's terminal does not
reach it and the parent decides when and how it stops; its stdin is closed and its stdout and
stderr go to one log file, whose tail the errors here quote. A hub child is configured only
through ``FBRHUB_*`` variables (:func:`child_env`), never through the parent's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HOST = "127.0.0.1"
_POLL_SECONDS = 0.1


class ChildFailed(RuntimeError):
    """A child exited before it was ready, or was not ready in time.

    The message names the child and ends with the last lines of its log.
    """


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def child_env(settings: Mapping[str, object] | None = None) -> dict[str, str]:
    """The environment of a child: ours without ``FBRHUB_*``, plus ``settings``.

    Args:
        settings: hub settings by field name; each becomes ``FBRHUB_<NAME>=str(value)``.

    Returns:
        The environment, with ``PYTHONUNBUFFERED=1`` so the log is written as things happen.
    """
    # The user's own FBRHUB_* variables must not leak into a child configured here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBRHUB_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"FBRHUB_{name.upper()}": str(value) for name, value in (settings or {}).items()})
    return env


@dataclass
class ChildProcess:
    """A child OS process serving on a local address, with its output in a log file.

    Attributes:
        name: what error messages call it, e.g. ``"hub"``.
        process: the child.
        log: the file holding its stdout and stderr.
        address: ``host:port`` it serves on.
    """

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    address: str

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str],
        *,
        name: str,
        address: str,
        cwd: Path | None = None,
    ) -> ChildProcess:
        """Start ``argv`` in a new session, stdin closed, stdout and stderr appended to ``log``.

        Args:
            argv: the command line, program first.
            log: the log file (appended to, so a restarted child keeps its history).
            env: the child's whole environment (see :func:`child_env`).
            name: what error messages call the child.
            address: ``host:port`` the child will serve on.
            cwd: the child's working directory (default: ours).
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(name, process, log, address)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    @property
    def url(self) -> str:
        """``http://<address>``: the base URL of a child that serves HTTP."""
        return f"http://{self.address}"

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.process.poll() is None

    def tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the child's output."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def rss_bytes(self) -> int:
        """The child's resident memory now (``VmRSS`` in ``/proc/<pid>/status``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    async def wait_serving(self, timeout: float = 60.0) -> None:
        """Poll the standard gRPC health service at :attr:`address` until it says SERVING.

        Raises:
            ChildFailed: the child exited, or was not serving within ``timeout`` seconds.
        """
        async with grpc.aio.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                try:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                except grpc.aio.AioRpcError:
                    return False
                return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

            await self._wait_until(serving, timeout)

    async def wait_port(self, timeout: float = 30.0) -> None:
        """Wait until something accepts TCP connections at :attr:`address`.

        Raises:
            ChildFailed: the child exited, or the port was not open within ``timeout`` seconds.
        """
        host, _, port = self.address.rpartition(":")

        async def port_open() -> bool:
            try:
                _, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await self._wait_until(port_open, timeout)

    async def _wait_until(self, ready: Callable[[], Awaitable[bool]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await ready():
            code = self.process.poll()
            if code is not None:
                raise ChildFailed(f"the {self.name} exited early (code {code}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise ChildFailed(
                    f"the {self.name} not ready after {timeout:.0f} s:\n{self.tail()}"
                )
            await asyncio.sleep(_POLL_SECONDS)

    def kill(self) -> int:
        """SIGKILL the child (a crash: nothing is flushed or recorded), reap it; its exit code."""
        if self.alive():
            self.process.kill()
        return self.process.wait()

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; return the exit code.

        A hub stopped by SIGTERM drains its RPCs and finishes in-flight FBR requests first,
        and exits 0.
        """
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.kill()


def spawn_hub(
    log: Path,
    settings: Mapping[str, object],
    *,
    module: str = "server.commands",
    args: Sequence[str] = ("serve",),
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ChildProcess:
    """Start ``python -m <module> <args>`` (the hub) with ``FBRHUB_<NAME>=value`` per setting.

    Args:
        log: the hub's log file.
        settings: hub settings by field name (:class:`server.settings.Settings`);
            ``grpc_listen`` defaults to a free port on 127.0.0.1.
        module: the module to run; another launcher must honour the same settings.
        args: its arguments.
        cwd: the child's working directory (default: ours); it must make ``module``
            importable.
        env: more environment variables, e.g. ``OTEL_*`` (not ``FBRHUB_*``: use settings).

    Returns:
        The child; ``await hub.wait_serving()`` before using it.
    """
    chosen: dict[str, object] = dict(settings)
    chosen.setdefault("grpc_listen", f"{HOST}:{free_port()}")
    return ChildProcess.start(
        [sys.executable, "-m", module, *args],
        log,
        {**child_env(chosen), **(env or {})},
        name="hub",
        address=str(chosen["grpc_listen"]),
        cwd=cwd,
    )


def spawn_simulator(
    log: Path,
    tokens: Sequence[str],
    *,
    latency: float | None = None,
    error_rate: float | None = None,
    seed: int | None = None,
    cwd: Path | None = None,
) -> ChildProcess:
    """Start the FBR simulator (``python -m clients.fbr_simulator``) on a free local port.

    Args:
        log: the simulator's log file.
        tokens: the security tokens it knows, each ``TOKEN=NTN[:sandbox|production]``.
        latency: fixed seconds before each answer (default: none).
        error_rate: share of requests answered with a gateway fault (default: none).
        seed: seed of its random draws (default: the simulator's).
        cwd: the child's working directory (default: ours).

    Returns:
        The child; ``await simulator.wait_port()`` before using :attr:`ChildProcess.url`.
    """
    port = free_port()
    argv = [sys.executable, "-m", "clients.fbr_simulator", "--host", HOST, "--port", str(port)]
    for token in tokens:
        argv += ["--token", token]
    for flag, value in (("--latency", latency), ("--error-rate", error_rate), ("--seed", seed)):
        if value is not None:
            argv += [flag, str(value)]
    return ChildProcess.start(
        argv, log, child_env(), name="FBR simulator", address=f"{HOST}:{port}", cwd=cwd
    )
