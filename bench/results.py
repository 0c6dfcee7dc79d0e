"""Where a benchmark's figures go when asked (`--results FILE`): the report it printed, under the date, the
command and the machine it ran on, in one section per script of a Markdown file (`make bench` writes
docs/benchmarks.md). A new run replaces its own script's section and keeps the others."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

HEADER = """# Benchmark results

Written by `make bench` (`bench/bench_engine.py`, `bench/bench_scale.py`, `bench/bench_sql.py`,
`bench/bench_small.py` and `bench/bench_large.py` with `--results`); each section is the report its script
printed, with the machine and the date it ran on.
Machines of the same kind differ by up to 2x or more: compare the ratios, which each script measures
against a baseline in the same run.
What is measured, and the targets, are in [performance.md](performance.md).
"""


def machine() -> str:
    """The processor, cores, memory and Python a figure was measured with."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 2**20:.0f} GiB"
    return f"{model}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}"


@contextlib.contextmanager
def recorded(path: str | None, script: str) -> Iterator[None]:
    """Print as usual; with a `path`, also keep what was printed as this script's section of that file."""
    if path is None:
        yield
        return
    captured = io.StringIO()
    out = sys.stdout

    class Tee(io.TextIOBase):
        def write(self, text: str) -> int:
            out.write(text)
            return captured.write(text)

        def flush(self) -> None:
            out.flush()

    started = datetime.now(UTC)
    with contextlib.redirect_stdout(Tee()):
        yield
    took = (datetime.now(UTC) - started).total_seconds()
    # A section may be named by the script and an option of it ("bench_scale.py --tasks-only").
    command = " ".join(["python", f"bench/{script.split()[0]}", *sys.argv[1:]])
    section = (
        f"## {script}\n\n{started:%Y-%m-%d %H:%M} UTC, {took / 60:.0f} min, on {machine()}: `{command}`\n\n"
        f"```\n{captured.getvalue().rstrip()}\n```\n"
    )
    write_section(Path(path), script, section)


def write_section(path: Path, script: str, section: str) -> None:
    text = path.read_text() if path.exists() else HEADER
    sections = re.split(r"(?m)^(?=## )", text)
    kept = [part for part in sections[1:] if not part.startswith(f"## {script}\n")]
    body = sorted([*kept, section], key=lambda part: part.split("\n", 1)[0])
    path.write_text(sections[0].rstrip() + "\n\n" + "\n".join(part.rstrip() + "\n" for part in body))
