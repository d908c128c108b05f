"""Helpers shared by the benchmark scripts: a table printer, a JSON writer and a loopback server process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Where results go: bench/results/, or $BENCH_RESULTS (bench/gpu_checks.sh points it at the device tool's $OUT).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or REPO / "bench" / "results")


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """Print rows as an aligned text table."""
    columns = list(rows[0])
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))


def write_results(name: str, rows: list[dict[str, Any]], **context: Any) -> Path:
    """Save rows and the machine they ran on to RESULTS/NAME.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    machine = {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpu_count()}
    path.write_text(json.dumps({"machine": machine, **context, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def server_process(*args: str):
    """Run tests/chat_server.py in its own process (as a real remote server would be) and yield its URL."""
    command = [sys.executable, str(REPO / "tests" / "chat_server.py"), "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"the test server did not start: {line!r}")
        yield line.split(" ", 1)[1]
    finally:
        process.terminate()
        process.wait(timeout=10)
