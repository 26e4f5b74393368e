#!/usr/bin/env bash
# The SDK's tests (and, where the hub runs, the hub and the demo) on the Pythons that the
# main suite does not use. .ci/run calls it after `make test`; run it by hand the same way.
#
#   scripts/other_pythons.sh [VERSION...]      default: 3.9 3.10 3.12 3.13
#
# For each version it looks for an interpreter (python3.X on PATH, then pyenv's), builds a
# fresh venv in .venv-pythons/3.X, checks that `pip install ./clients/hub` brings at most 6
# distributions, and:
#   - 3.9, 3.10 (SDK only): installs ./clients/hub[test] and runs its tests against a hub
#     run by the main .venv's Python;
#   - 3.11 and newer: installs the hub too, runs the SDK's tests against a hub on that same
#     Python (so `fbrhub serve` runs on it), then the demo.
# A version without an interpreter is skipped with a loud line: nothing is skipped silently.
# Exits non-zero if any run fails.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VERSIONS=("$@")
[ "${#VERSIONS[@]}" -eq 0 ] && VERSIONS=(3.9 3.10 3.12 3.13)
MAIN_PYTHON="$ROOT/.venv/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

find_python() { # version: the first interpreter of that version that runs (a pyenv shim
    # of a version that is not selected is on PATH but does not run)
    local candidate
    for candidate in "$(command -v "python$1" 2>/dev/null)" \
        $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python"$1" 2>/dev/null | sort -rV); do
        if [ -n "$candidate" ] && "$candidate" -c 'import venv' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

failed=()
skipped=()
for version in "${VERSIONS[@]}"; do
    printf '\n==> Python %s\n' "$version"
    python="$(find_python "$version" || true)"
    if [ -z "$python" ]; then
        echo "!!!!! SKIPPED: no Python $version interpreter here (python$version or pyenv's):"
        echo "!!!!! the SDK's tests (and the demo) on Python $version were NOT run."
        skipped+=("$version")
        continue
    fi
    venv="$ROOT/.venv-pythons/$version"
    rm -rf "$venv"
    "$python" -m venv "$venv" && "$venv/bin/python" -m pip install -qq --upgrade pip || {
        failed+=("$version: venv")
        continue
    }
    # The SDK alone must stay small: at most 6 distributions in a fresh venv.
    if ! "$venv/bin/python" -m pip install -qq ./clients/hub; then
        failed+=("$version: install")
        continue
    fi
    installed="$("$venv/bin/python" -m pip list --format=freeze | grep -cvE '^(pip|setuptools)==')"
    echo "pip install ./clients/hub on $version: $installed distributions"
    if [ "$installed" -gt 6 ]; then
        "$venv/bin/python" -m pip list --format=freeze
        failed+=("$version: the SDK installs $installed distributions (at most 6)")
    fi
    server_python="$MAIN_PYTHON"
    if "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        if ! "$venv/bin/python" -m pip install -qq "./clients/hub[test,otel]" . ; then
            failed+=("$version: install")
            continue
        fi
        server_python="$venv/bin/python"
    elif ! "$venv/bin/python" -m pip install -qq "./clients/hub[test]"; then
        failed+=("$version: install")
        continue
    fi
    "$venv/bin/python" --version
    echo "SDK tests on $version (the hub on $("$server_python" --version 2>&1))"
    if ! (cd clients/hub && FBRHUB_SERVER_PYTHON="$server_python" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider); then
        failed+=("$version: SDK tests")
    fi
    if [ "$server_python" != "$MAIN_PYTHON" ]; then
        echo "the demo on $version"
        if ! env -u FBRHUB_TEST_POSTGRES_URL "$venv/bin/python" -m examples.demo \
            --invoices 300 --timeout 60 </dev/null >"$venv/demo.log" 2>&1; then
            tail -n 40 "$venv/demo.log"
            failed+=("$version: demo")
        else
            grep -E "Demo OK|Accepted by FBR" "$venv/demo.log" || true
        fi
    fi
done

echo
[ "${#skipped[@]}" -ne 0 ] && echo "!!!!! Pythons SKIPPED (no interpreter): ${skipped[*]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "other Pythons FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "other Pythons OK: ${VERSIONS[*]}${skipped:+ (skipped: ${skipped[*]})}"
