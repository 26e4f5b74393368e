"""A real hub for the SDK's tests: the FBR simulator and the hub as processes, set up by CLI.

The SDK's tests run on every Python the SDK supports (3.9 to 3.13) while the hub needs 3.11+,
so they never import the hub: they drive it as an operator would, through the ``fbrhub``
command line of the hub's own interpreter, and talk to it over gRPC only. That interpreter
is ``$FBRHUB_SERVER_PYTHON``, else the repository's ``.venv``, else this one.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from fbrhub.v1 import invoice_pb2

REPO_ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
SELLER_NTN = "8885801"
FBR_TOKEN = "sdk-test-token"
PKT = dt.timezone(dt.timedelta(hours=5))
READY_SECONDS = 30.0


def server_python() -> str:
    """The interpreter that runs the hub (it has the hub's dependencies installed)."""
    chosen = os.environ.get("FBRHUB_SERVER_PYTHON")
    if chosen:
        return chosen
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _env(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBRHUB_")}
    env.update({f"FBRHUB_{k.upper()}": v for k, v in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(
        f"not listening on {port} after {READY_SECONDS}s:\n{log.read_text()[-2000:]}"
    )


class HubProcess:
    """A hub on a SQLite file in ``work_dir`` with one tenant, delivering to a simulator.

    Args:
        work_dir: holds the database and the logs.
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.database_url = f"sqlite+aiosqlite:///{work_dir / 'hub.db'}"
        self.port = free_port()
        self.address = f"{HOST}:{self.port}"
        self.api_key = ""
        self._hub: subprocess.Popen[bytes] | None = None
        self._simulator: subprocess.Popen[bytes] | None = None
        self._sim_port = free_port()
        self.starts = 0

    def _cli(self, *args: str) -> str:
        result = subprocess.run(
            [server_python(), "-m", "server.commands", *args],
            cwd=REPO_ROOT,
            env=_env({"database_url": self.database_url}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"fbrhub {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout.strip()

    def set_up(self) -> None:
        """Migrate, create the tenant and its ERP key, start the simulator and the hub."""
        self._cli("migrate")
        tenant = self._cli(
            *("tenant", "create", "--ntn", SELLER_NTN, "--name", "SDK Test Traders"),
            *("--province", "PUNJAB", "--address", "1 Test Road, Lahore"),
            *("--fbr-token", FBR_TOKEN, "--scenarios", "SN001,SN002"),
        ).splitlines()[-1]
        self.api_key = self._cli("apikey", "create", "--tenant", tenant).splitlines()[-1]
        log = self.work_dir / "simulator.log"
        with log.open("ab") as out:
            self._simulator = subprocess.Popen(
                [
                    *(server_python(), "-m", "clients.fbr_simulator", "--host", HOST),
                    *("--port", str(self._sim_port)),
                    *("--token", f"{FBR_TOKEN}={SELLER_NTN}:sandbox"),
                ],
                cwd=REPO_ROOT,
                env=_env({}),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_port(self._sim_port, self._simulator, log)
        self.start()

    def start(self) -> None:
        """Start the hub (again) on the same port and wait until it is SERVING."""
        settings = {
            "database_url": self.database_url,
            "grpc_listen": self.address,
            "fbr_base_url": f"http://{HOST}:{self._sim_port}",
            "forwarder_poll_seconds": "0.05",
            "retry_base_seconds": "0.05",
            "retry_max_seconds": "0.5",
            "results_poll_seconds": "0.1",
            "shutdown_grace_seconds": "1",
            "log_level": "WARNING",
        }
        log = self.work_dir / "hub.log"
        with log.open("ab") as out:
            self._hub = subprocess.Popen(
                [server_python(), "-m", "server.commands", "serve"],
                cwd=REPO_ROOT,
                env=_env(settings),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self._wait_serving(log)

    def _wait_serving(self, log: Path) -> None:
        assert self._hub is not None
        deadline = time.monotonic() + READY_SECONDS
        with grpc.insecure_channel(self.address) as channel:
            check: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/grpc.health.v1.Health/Check"
            )
            while time.monotonic() < deadline:
                if self._hub.poll() is not None:
                    raise RuntimeError(f"hub exited:\n{log.read_text()[-2000:]}")
                try:
                    if check(b"", timeout=1.0) == b"\x08\x01":
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"hub not serving after {READY_SECONDS}s:\n{log.read_text()[-2000:]}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the hub: SIGTERM (graceful) or SIGKILL, and wait for it to exit."""
        if self._hub is None or self._hub.poll() is not None:
            return
        self._hub.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self._hub.wait(timeout=30)

    def tear_down(self) -> None:
        """Stop the hub and the simulator."""
        self.stop()
        if self._simulator is not None and self._simulator.poll() is None:
            self._simulator.terminate()
            self._simulator.wait(timeout=30)

    def restart(self, *, kill: bool = False) -> None:
        """Stop the hub and start it again on the same address."""
        self.stop(kill=kill)
        self.start()


def make_invoice(reference: str, *, hs_code: str = "8516.4000") -> invoice_pb2.Invoice:
    """A valid sandbox invoice (scenario SN001) for the test seller, dated yesterday."""
    return invoice_pb2.Invoice(
        erp_reference=reference,
        invoice_type=invoice_pb2.INVOICE_TYPE_SALE_INVOICE,
        invoice_date=(dt.datetime.now(PKT).date() - dt.timedelta(days=1)).isoformat(),
        scenario_id="SN001",
        buyer_ntn_cnic="2046004",
        buyer_business_name="Buyer Ltd",
        buyer_province="SINDH",
        buyer_address="Karachi",
        buyer_registration_type=invoice_pb2.BUYER_REGISTRATION_TYPE_REGISTERED,
        items=[
            invoice_pb2.InvoiceItem(
                hs_code=hs_code,
                product_description="Electric steam iron",
                sale_type="Goods at standard rate (default)",
                rate="18%",
                uom="Numbers, pieces, units",
                quantity="2",
                value_sales_excluding_st="9000.00",
                sales_tax_applicable="1620.00",
                total_values="10620.00",
            )
        ],
    )
