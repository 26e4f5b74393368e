"""``make audit``: the hub's vulnerability assessment, as the privacy policy promises.

Three checks, each printing its findings:

1. **Python dependencies**: ``pip-audit`` over the project's environment (every pinned
   dependency, dev tools included, and what they pull in), against PyPI's advisory data.
2. **Code**: ruff's security rules (``S``, the bandit checks) over ``server/`` and ``clients/``
   (their test folders left out).
3. **Node tooling**: ``npm audit`` over ``package-lock.json``.

A finding fails the audit unless ``audit-ignore.toml`` lists it with a reason and a review
date that has not passed; an entry past its date stops suppressing, so every accepted risk
is looked at again. A check whose service cannot be reached is reported as NOT CHECKED, in
capitals, never as passed.

Exit codes: 0 everything checked and clean; 1 findings (or a broken ignore file);
3 no findings, but a check could not run. ``--strict`` makes 3 a failure too (1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IGNORE_FILE = ROOT / "audit-ignore.toml"
CODE_PATHS = ("server", "clients")
VENV_BIN = ROOT / ".venv" / "bin"


@dataclass(frozen=True)
class Finding:
    """One thing a check found: an advisory for a package, or a rule broken at a place."""

    check: str
    ids: tuple[str, ...]
    where: str
    summary: str


@dataclass
class Ignore:
    """An accepted finding: which ids, where (globs), why, and until when."""

    ids: tuple[str, ...]
    paths: tuple[str, ...]
    reason: str
    review_by: dt.date
    used: bool = False

    def covers(self, finding: Finding) -> bool:
        if not set(self.ids) & set(finding.ids):
            return False
        return not self.paths or any(fnmatch.fnmatch(finding.where, p) for p in self.paths)


@dataclass
class Result:
    """What a check did."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    unreachable: str = ""


def _run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def python_dependencies() -> Result:
    """pip-audit over the project's environment, against PyPI's vulnerability service."""
    result = Result("Python dependencies (pip-audit, PyPI advisory data)")
    command = [str(VENV_BIN / "pip-audit"), "--skip-editable", "--progress-spinner", "off"]
    try:
        done = _run([*command, "--format", "json"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        result.unreachable = f"pip-audit did not run: {exc}"
        return result
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        result.unreachable = "pip-audit could not query PyPI: " + " | ".join(tail)
        return result
    for dependency in report.get("dependencies", []):
        for vulnerability in dependency.get("vulns", []):
            ids = (vulnerability["id"], *vulnerability.get("aliases", []))
            fixed = ", ".join(vulnerability.get("fix_versions", [])) or "no fix yet"
            result.findings.append(
                Finding(
                    "pip-audit",
                    tuple(ids),
                    f"{dependency['name']}=={dependency['version']}",
                    f"{vulnerability['id']} (fixed in {fixed})",
                )
            )
    return result


def code() -> Result:
    """ruff's security rules (S) over the hub's and the clients' code."""
    result = Result(f"Code (ruff S rules on {' and '.join(p + '/' for p in CODE_PATHS)})")
    done = _run(
        [
            str(VENV_BIN / "ruff"),
            "check",
            "--select",
            "S",
            "--output-format",
            "json",
            # Tests drive processes and hold fixed test tokens on purpose; the code they test
            # is what ships.
            "--extend-exclude",
            "**/tests/**",
            *CODE_PATHS,
        ]
    )
    try:
        report = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        result.unreachable = "ruff did not produce a report: " + done.stderr.strip()[-200:]
        return result
    for item in report:
        path = Path(item["filename"]).resolve().relative_to(ROOT).as_posix()
        line = item["location"]["row"]
        result.findings.append(
            Finding(
                "ruff", (item["code"],), path, f"{item['code']} {path}:{line} {item['message']}"
            )
        )
    return result


def node_tooling() -> Result:
    """npm audit over package-lock.json (the registry's audit endpoint)."""
    result = Result("Node tooling (npm audit)")
    try:
        done = _run(["npm", "audit", "--json", "--package-lock-only"], timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result.unreachable = f"npm audit did not run: {exc}"
        return result
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {}
    if "vulnerabilities" not in report:
        detail = report.get("message") or done.stderr.strip().splitlines()[-1:] or "no answer"
        result.unreachable = f"the npm registry's audit endpoint did not answer: {detail}"
        return result
    for name, vulnerability in report["vulnerabilities"].items():
        advisories = [v for v in vulnerability.get("via", []) if isinstance(v, dict)]
        ids = tuple(str(v.get("url", "")).rsplit("/", 1)[-1] for v in advisories) or (name,)
        result.findings.append(
            Finding(
                "npm",
                (*ids, name),
                name,
                f"{name} ({vulnerability.get('severity', '?')}): {', '.join(ids)}",
            )
        )
    return result


def load_ignores(path: Path) -> list[Ignore]:
    """The accepted findings; raises ValueError for an entry without id, reason or date."""
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("ignore", [])
    ignores = []
    for index, entry in enumerate(entries):
        ids = entry.get("ids") or ([entry["id"]] if "id" in entry else [])
        review_by = entry.get("review_by")
        if (
            not ids
            or not str(entry.get("reason", "")).strip()
            or not isinstance(review_by, dt.date)
        ):
            raise ValueError(f"{path.name}: entry {index + 1} needs id(s), a reason and review_by")
        ignores.append(
            Ignore(tuple(ids), tuple(entry.get("paths", [])), entry["reason"].strip(), review_by)
        )
    return ignores


def judge(results: list[Result], ignores: list[Ignore], today: dt.date) -> int:
    """Print every check's outcome; returns the number of findings that are not accepted."""
    failing = 0
    for result in results:
        print(f"\n== {result.name}")
        if result.unreachable:
            print(f"   NOT CHECKED: {result.unreachable}")
            continue
        if not result.findings:
            print("   no findings")
        for finding in result.findings:
            cover = next((i for i in ignores if i.covers(finding)), None)
            if cover is not None:
                cover.used = True
            if cover is not None and cover.review_by >= today:
                print(f"   accepted ({cover.ids[0]}, until {cover.review_by}): {finding.summary}")
            elif cover is not None:
                failing += 1
                print(f"   FINDING (its acceptance was due for review on {cover.review_by}):")
                print(f"      {finding.summary}")
            else:
                failing += 1
                print(f"   FINDING: {finding.where}: {finding.summary}")
    used = [i for i in ignores if i.used]
    if used:
        print(f"\n== Accepted in {IGNORE_FILE.name}")
        for ignore in used:
            reason = " ".join(ignore.reason.split())
            print(f"   {', '.join(ignore.ids)} (review by {ignore.review_by}): {reason}")
    for ignore in ignores:
        if not ignore.used:
            print(f"\nnote: {IGNORE_FILE.name} entry {', '.join(ignore.ids)} matched nothing")
    return failing


def main(argv: list[str] | None = None) -> int:
    """Run the checks and print the report; the exit code says how it went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="a check that cannot run fails")
    args = parser.parse_args(argv)
    try:
        ignores = load_ignores(IGNORE_FILE)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results = [python_dependencies(), code(), node_tooling()]
    failing = judge(results, ignores, dt.date.today())
    unchecked = [r.name for r in results if r.unreachable]
    print()
    if failing:
        print(f"AUDIT FAILED: {failing} finding(s) not accepted in {IGNORE_FILE.name}")
        return 1
    if unchecked:
        print("AUDIT INCOMPLETE: NOT CHECKED: " + "; ".join(unchecked))
        return 1 if args.strict else 3
    print("AUDIT OK: every check ran; no findings beyond the accepted ones")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
