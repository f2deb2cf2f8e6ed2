"""benchmarks/gpu_check.sh without a GPU: its syntax, its plan, and its run with stand-ins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# A stand-in interpreter: CUDA "is available", each part writes what the real one would, the
# inversion at 512² fails; the merge runs the real Python.
FAKE_PYTHON = """#!/usr/bin/env bash
args="$*"
case "$args" in
  -c*) exit 0 ;;
  "-m pytest"*) xml="${args##*--junitxml=}"; xml="${xml%% *}"
     suite='<testsuite tests="5" failures="0" errors="0" skipped="0"/>'
     echo "<testsuites>$suite</testsuites>" > "$xml" ;;
  *gpu_edit.py*) echo '{"seconds_median": {"stock": 1.0}}' > "${args##*--out }" ;;
  *inversion.py*sd15-random*) echo "CUDA out of memory" >&2; exit 1 ;;
  *inversion.py*) folder="${args##*--out }"; mkdir -p "$folder"
     echo '{"summary": {}}' > "$folder/inversion.json" ;;
  *gpu_merge.py*) exec "$REAL_PYTHON" "$@" ;;
esac
"""


def test_the_script_parses_and_lists_every_part():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    env = {**os.environ, "PYTHON": "py"}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True,
                          check=True, env=env)  # fmt: skip
    plan = done.stdout.splitlines()
    assert plan[0].startswith("py -m pytest -m cuda tests")
    assert "benchmarks/gpu_edit.py" in plan[1]
    assert "--model sd15-random --device cuda --timing-only" in plan[2]
    assert "benchmarks/inversion.py --device cuda" in plan[3]
    assert "benchmarks/gpu_merge.py" in plan[4]
    for line in plan:  # every script it names exists
        for word in line.split():
            if word.startswith("benchmarks/") and word.endswith((".py", ".sh")):
                assert (ROOT / word).is_file(), word


def test_without_a_gpu_it_says_so_and_runs_nothing():
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    if done.returncode != 3:
        pytest.skip("a CUDA GPU is visible here")
    assert "no CUDA GPU here" in done.stderr


def test_a_run_writes_one_json_and_keeps_a_failed_parts_log(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHON": str(fake), "REAL_PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), "--out", str(out)], capture_output=True,
                          text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stderr  # one part failed
    result = json.loads(out.read_text())
    assert result["cuda_tests"]["tests"] == {"tests": 5, "failures": 0, "errors": 0, "skipped": 0}
    assert result["edit_512_fp16"]["results"] == {"seconds_median": {"stock": 1.0}}
    assert result["inversion_builtin_gpu"]["results"] == {"summary": {}}
    assert result["inversion_512_fp16"]["exit_status"] == 1
    assert "CUDA out of memory" in result["inversion_512_fp16"]["log_tail"]
    assert result["all_passed"] is False
