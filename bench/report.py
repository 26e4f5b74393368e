"""Benchmark results: sections of tables, printed as they finish and written to RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """One benchmark's outcome.

    Attributes:
        title: heading.
        table: a markdown table.
        notes: lines printed under the table (method, caveats, verdicts).
        figures: key numbers for the summary, by name.
    """

    title: str
    table: str
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """The section as markdown."""
        notes = "\n".join(f"- {n}" for n in self.notes)
        return f"## {self.title}\n\n{self.table}\n\n{notes}\n"


def machine() -> dict[str, str]:
    """Cores, CPU model, memory, kernel and Python of this machine."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def write_results(path: Path, sections: list[Section], summary: str, seconds: float) -> None:
    """Write RESULTS.md: the machine, the date, the summary and every section."""
    info = machine()
    header = "\n".join(
        [
            "# Benchmark results (`make bench`)",
            "",
            f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
            f'- Machine: {info["cores"]} cores, CPU model "{info["cpu"]}", {info["memory"]} '
            f"RAM, Linux {info['kernel']}, Python {info['python']}",
            f"- Whole run: {seconds / 60:.1f} min. Client, hub, PostgreSQL and the FBR simulator "
            "share these cores, so every ratio compares designs on the same box in the same run.",
            "",
        ]
    )
    body = "\n".join(section.render() for section in sections)
    path.write_text(f"{header}\n{summary}\n\n{body}")
