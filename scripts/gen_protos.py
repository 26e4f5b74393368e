"""Regenerate the Python code for the protobuf contract in proto/.

Writes clients/hub/src/fbrhub/v1/*_pb2.py(i) and *_pb2_grpc.py(i) (shipped by the SDK,
``fbrhub-sdk``) with grpc_tools.protoc and the mypy-protobuf plugins. Run it with the
generator venv (``make gen``: .venv-gen, scripts/gen-requirements.txt), whose pinned
grpcio-tools sets the oldest grpcio and protobuf the generated code accepts. CI runs this
and fails if the committed files differ.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
THIRD_PARTY = ROOT / "third_party" / "proto"
OUT = ROOT / "clients" / "hub" / "src"


def main() -> int:
    """Run protoc over every .proto file we own."""
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{THIRD_PARTY}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *sources,
    ]
    subprocess.run(command, check=True, cwd=PROTO_ROOT)
    for package in {Path(s).parent for s in sources} | {Path(s).parent.parent for s in sources}:
        init = OUT / package / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated protobuf code; do not edit. Source: proto/."""\n')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
