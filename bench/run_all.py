"""Run every benchmark (``make bench``), print the tables and write bench/RESULTS.md.

Order: hot path, ingest (SQLite, PostgreSQL, raw COPY, naive), forwarding (which reuses the
PostgreSQL ingest backlog), memory, telemetry (ingest and forwarding again with traces and
metrics exported). PostgreSQL is ``FBRHUB_BENCH_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/bench``), a database of its own: it is emptied.

Run: ``.venv/bin/python bench/run_all.py [--scale 1.0] [--only hotpath ingest forward memory
telemetry]``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import forward_bench, hotpath_bench, ingest_bench, memory_bench, telemetry_bench
from bench.common import write_workload
from bench.report import Section, write_results

SECTIONS = ("hotpath", "ingest", "forward", "memory", "telemetry")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def summary(sections: list[Section]) -> str:
    """Key figures against the performance targets (docs/benchmarks.md)."""
    lines = ["## Summary against targets", ""]
    for section in sections:
        verdicts = section.figures.get("verdicts", [])
        for name, met, shown in verdicts:
            lines.append(f"- {name}: **{shown}** ({'met' if met else 'not met'})")
        prefixes = ("Extrapolated", "The hub's converter") + (() if verdicts else ("Target",))
        lines.extend(f"- {note}" for note in section.notes if note.startswith(prefixes))
    return "\n".join(lines)


async def run(options: argparse.Namespace, work: Path) -> list[Section]:
    """Run the selected benchmarks in order, printing each table as it completes."""
    sections: list[Section] = []
    workload = work / "workload.pickle"
    if {"ingest", "forward", "memory", "telemetry"} & set(options.only):
        count = int(100_000 * options.scale) + int(10_000 * options.scale) + 2000
        print(f"building the workload: {count:,} invoices of ~1.5 KB", flush=True)
        write_workload(workload, f"B{int(time.time())}", count)

    def done(section: Section) -> None:
        sections.append(section)
        print(f"\n{section.render()}", flush=True)

    if "hotpath" in options.only:
        print("hot path micro-benchmark", flush=True)
        done(hotpath_bench.run())
    if "ingest" in options.only:
        print("ingest", flush=True)
        done(await ingest_bench.run(work, workload, options.scale))
    if "forward" in options.only:
        if "ingest" not in options.only:
            raise SystemExit("forward needs the backlog that ingest leaves: add 'ingest'")
        print("forwarding", flush=True)
        done(await forward_bench.run(work, options.scale))
    if "memory" in options.only:
        print("memory", flush=True)
        done(await memory_bench.run(work, workload, options.scale))
    if "telemetry" in options.only:
        print("telemetry", flush=True)
        done(await telemetry_bench.run(work, workload, options.scale))
    return sections


def main() -> int:
    """Entry point of ``make bench``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every N by this")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write results")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fbrhub-bench-"))
    started = time.monotonic()
    try:
        sections = asyncio.run(run(options, work))
    except BaseException:
        print(f"benchmark failed; logs kept in {work}", file=sys.stderr)
        raise
    seconds = time.monotonic() - started
    text = summary(sections)
    print(f"\n{text}\n\nwhole run: {seconds / 60:.1f} min")
    write_results(options.results, sections, text, seconds)
    print(f"written: {options.results}")
    if options.keep:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
