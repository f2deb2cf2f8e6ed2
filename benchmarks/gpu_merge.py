"""Merge the parts of ``benchmarks/gpu_check.sh`` into one JSON.

    python benchmarks/gpu_merge.py WORK OUT PART...

``WORK`` holds, per part, ``PART.status`` ("exit-status seconds"), ``PART.log``, and its results:
``PART.json``, ``PART/inversion.json`` or (the tests) ``cuda_tests.xml``; ``gpu.txt`` names the
GPU. A failed part keeps the tail of its log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

LOG_TAIL = 4000  # characters of a failed part's log kept


def part_entry(work: Path, part: str) -> dict:
    """One part's exit status, seconds, results (or test counts) and, if it failed, log tail."""
    status, seconds = (work / f"{part}.status").read_text().split()
    entry: dict = {"exit_status": int(status), "seconds": int(seconds)}
    for found in (work / f"{part}.json", work / part / "inversion.json"):
        if found.exists():
            entry["results"] = json.loads(found.read_text())
    report = work / f"{part}.xml"
    if report.exists():
        root = ElementTree.parse(report).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        keys = ("tests", "failures", "errors", "skipped")
        entry["tests"] = {key: int(suite.get(key, 0)) for key in keys}
    log = work / f"{part}.log"
    if int(status) != 0 and log.exists():
        entry["log_tail"] = log.read_text()[-LOG_TAIL:]
    return entry


def merge(work: Path, out: Path, parts: list[str]) -> dict:
    gpu = work / "gpu.txt"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    result = {
        "gpu": gpu.read_text().strip() if gpu.exists() else None,
        "commit": commit.stdout.strip() or None,
        "all_passed": True,
    }
    for part in parts:
        result[part] = part_entry(work, part)
        result["all_passed"] &= result[part]["exit_status"] == 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    merge(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
