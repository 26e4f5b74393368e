"""`buf generate` output compiles: Go, Java and TypeScript here; C# is generated only.

No .NET SDK installs from the registries these machines reach, so the C# output is checked
for its files and namespace, not compiled. The descriptor set (`make descriptors`) carries
the comments that tools show.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from google.protobuf import descriptor_pb2

from tests.examples.toolchains import (
    NODE_MODULES,
    REPO_ROOT,
    go_path,
    java_classpath,
    node_package,
    run,
    tool,
)

GO_PACKAGE = "smartinvoicing.pk/fbrhub/gen/go/fbrhub/v1"


async def generate(out: Path) -> Path:
    """Run `buf generate` (buf.gen.yaml) into ``out``."""
    node_package("@bufbuild/buf")
    node_package("ts-proto")
    tool("protoc", "apt-get install protobuf-compiler")
    tool("protoc-gen-go", "apt-get install protoc-gen-go")
    tool("protoc-gen-go-grpc", "apt-get install protoc-gen-go-grpc")
    tool("grpc_java_plugin", "apt-get install protobuf-compiler-grpc-java-plugin")
    code, output = await run([str(NODE_MODULES / ".bin" / "buf"), "generate", "-o", str(out)])
    assert code == 0, output
    return out / "gen"


async def test_generated_code_compiles_in_go_java_and_typescript(tmp_path: Path) -> None:
    generated = await generate(tmp_path)
    env = {
        **os.environ,
        "GOPATH": go_path(generated),
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(tmp_path / "gocache"),
    }
    code, output = await run(["go", "build", GO_PACKAGE], env=env, timeout=300)
    assert code == 0, output

    sources = sorted(str(p) for p in (generated / "java").rglob("*.java"))
    assert any(s.endswith("InvoiceServiceGrpc.java") for s in sources)
    javac = tool("javac", "apt-get install default-jdk-headless")
    argv = [javac, "-nowarn", "-d", str(tmp_path / "classes"), "-cp", java_classpath()]
    code, output = await run([*argv, *sources], timeout=300)
    assert code == 0, output
    assert (tmp_path / "classes/pk/smartinvoicing/fbrhub/v1/ErrorReason.class").exists()

    node_package("typescript")
    node_package("@grpc/grpc-js")
    config = tmp_path / "tsconfig.json"
    options = {
        "target": "ES2020",
        "module": "commonjs",
        "strict": True,
        "esModuleInterop": True,
        "noEmit": True,
        "types": ["node"],
        "typeRoots": [str(NODE_MODULES / "@types")],
    }
    # The output lies outside the repository: let it find the repository's node_modules.
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    include = [f"{generated / 'ts'}/**/*.ts"]
    config.write_text(json.dumps({"compilerOptions": options, "include": include}))
    code, output = await run([str(NODE_MODULES / ".bin" / "tsc"), "-p", str(config)])
    assert code == 0, output
    assert (
        "export const InvoiceServiceClient"
        in (generated / "ts/fbrhub/v1/invoice_service.ts").read_text()
    )

    csharp = (generated / "csharp" / "InvoiceService.cs").read_text()
    assert "namespace SmartInvoicing.FbrHub.V1" in csharp


async def test_descriptor_set_carries_the_contract_and_its_comments(tmp_path: Path) -> None:
    node_package("@bufbuild/buf")
    out = tmp_path / "fbrhub.binpb"
    buf = str(NODE_MODULES / ".bin" / "buf")
    code, output = await run([buf, "build", "--as-file-descriptor-set", "-o", str(out)])
    assert code == 0, output
    files = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    assert {"google/rpc/status.proto", "fbrhub/v1/error_reason.proto"} <= set(files)
    comments = [
        loc.leading_comments
        for loc in files["fbrhub/v1/invoice_service.proto"].source_code_info.location
    ]
    assert any("Streams batches of invoices in" in c for c in comments)
    assert (REPO_ROOT / "buf.gen.yaml").exists()
