"""The other languages' toolchains for the example and generated-code tests.

`.ci/run` installs them (Debian's Go, protoc, grpc-java and the Java jars; Node packages
from package.json). Where one is missing, a test skips with the reason locally, and fails
under CI (``CI`` set), so that CI can never pass while leaving a language out.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import missing

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "node_modules"
DEBIAN_GOPATH = Path("/usr/share/gocode")
DEBIAN_JARS = Path("/usr/share/java")
JAVA_JARS = (
    "protobuf",
    "grpc-api",
    "grpc-stub",
    "grpc-protobuf",
    "grpc-protobuf-lite",
    "guava",
    "geronimo-annotation-1.3-spec",
)


def tool(name: str, how: str) -> str:
    """The path of executable ``name``, or a skip (a failure under CI)."""
    path = shutil.which(name)
    if path is None:
        missing(name, how)
    assert path is not None
    return path


def node_package(name: str) -> None:
    """Require a package from package.json in node_modules/."""
    if not (NODE_MODULES / name / "package.json").exists():
        missing(f"node package {name}", "make node")


def go_path(generated: Path) -> str:
    """GOPATH for code generated into ``generated``/go and Debian's Go packages."""
    tool("go", "apt-get install golang-go")
    if not (DEBIAN_GOPATH / "src" / "google.golang.org" / "grpc").exists():
        missing("grpc-go", "apt-get install golang-google-grpc-dev golang-google-genproto-dev")
    return f"{generated / 'go'}:{DEBIAN_GOPATH}"


def java_classpath() -> str:
    """The classpath of Debian's protobuf and grpc-java jars."""
    jars = [DEBIAN_JARS / f"{name}.jar" for name in JAVA_JARS]
    absent = [jar.name for jar in jars if not jar.exists()]
    if absent:
        missing(f"Java jars {absent}", "apt-get install libprotobuf-java libgrpc-java")
    return ":".join(str(jar) for jar in jars)


async def run(
    argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str]:
    """Run a command without blocking the event loop; its exit code and its output."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")
