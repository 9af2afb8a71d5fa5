"""Regenerates a benchmark's table in the top-level README from what the benchmark just measured.

Each benchmark owns the block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; figures there
are never typed in. :func:`cpu` names the machine they were measured on.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def emit(name: str, table: str, write: bool) -> None:
    """Print the measured table and, with ``write``, put it in the README block ``name``."""
    print(table)
    if write:
        write_block(name, table)


def write_block(name: str, table: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{README}: the markers {start} and {end} are missing")
    block = f"{start}\n{table}\n{end}"
    README.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, count=1, flags=re.S))


def cpu() -> str:
    """The processor's model name (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
