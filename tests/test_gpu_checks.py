"""bench/gpu_checks.sh, the one script a session with a lent GPU runs, tested at toy sizes on the CPU (SMOKE=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "bench" / "gpu_checks.sh"


def run_script(*parts: str, out, cache, timeout: int = 600) -> subprocess.CompletedProcess:
    # The script calls python3 from PATH: make that the interpreter running the tests, activated venv or not.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "SMOKE": "1", "OUT": str(out), "GPU_CACHE": str(cache), "PATH": path}
    return subprocess.run(["bash", str(SCRIPT), *parts], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_every_part_runs_and_leaves_its_json_status_and_log_under_out(tmp_path):
    done = run_script("throughput", "restore", "degrade", out=tmp_path / "out", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    status = (out / "status.txt").read_text().splitlines()
    assert status == ["throughput exit 0", "restore exit 0", "degrade exit 0"]
    rows = json.loads((out / "train_throughput.json").read_text())["rows"]
    assert [row["path"].split(":")[0] for row in rows] == ["baseline", "fast"]
    assert json.loads((out / "restore.json").read_text())["rows"] and (out / "degrade.json").is_file()
    assert "== restore: python3 bench/bench_restore.py --device cpu" in (out / "log.txt").read_text()


def test_a_failing_step_makes_the_run_fail_and_an_unknown_part_runs_nothing(tmp_path):
    out = tmp_path / "out"
    unknown = run_script("restore", "speed", out=out, cache=tmp_path / "cache")
    assert unknown.returncode == 2 and "unknown part 'speed'" in unknown.stderr
    assert not (out / "status.txt").exists()
    env = {**os.environ, "SMOKE": "1", "OUT": str(out), "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    (tmp_path / "python3").write_text("#!/bin/sh\necho 'CUDA error: no device' >&2\nexit 3\n")
    (tmp_path / "python3").chmod(0o755)
    failed = subprocess.run(["bash", str(SCRIPT), "restore"], env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0
    assert (out / "status.txt").read_text() == "restore exit 3\n"
    assert "CUDA error: no device" in (out / "log.txt").read_text()
