#!/usr/bin/env bash
# Regenerate clients/hub/src/fbrhub/ from proto/ and fail if the result differs from what git has.
#
# The generated code is committed, so a change to proto/ must come with the regenerated
# files (run `make gen` and commit both). Uses $PYTHON (default .venv-gen/bin/python), which needs
# grpcio-tools and mypy-protobuf (scripts/gen-requirements.txt).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv-gen/bin/python}"
GEN_DIR=clients/hub/src/fbrhub/

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "check_generated: not a git work tree; cannot compare generated code" >&2
    exit 2
fi

before="$(git status --porcelain -- "$GEN_DIR")"

"$PYTHON" scripts/gen_protos.py

after="$(git status --porcelain -- "$GEN_DIR")"
if [ -n "$after" ]; then
    echo "check_generated: FAILED: the generated code in $GEN_DIR does not match proto/." >&2
    if [ -n "$before" ]; then
        echo "(note: $GEN_DIR already had uncommitted changes before regeneration)" >&2
    fi
    echo "Changed or untracked files after 'python scripts/gen_protos.py':" >&2
    echo "$after" >&2
    git --no-pager diff --stat -- "$GEN_DIR" >&2 || true
    git --no-pager diff -- "$GEN_DIR" | head -n 80 >&2 || true
    echo "Fix: run 'make gen' and commit the regenerated files together with the .proto change." >&2
    exit 1
fi
echo "check_generated: OK: $GEN_DIR matches proto/."
