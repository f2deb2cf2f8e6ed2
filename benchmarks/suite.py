"""One benchmark run: every configuration of a mode, each measurement in a child process of its
own, then the JSON and the Markdown table written."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.cases import (
    CROSS_STEPS,
    GUIDANCE,
    SEED,
    SELF_STEPS,
    SOURCE_PROMPT,
    TARGET_PROMPT,
    plan,
)
from benchmarks.children import measure_memory, run_child
from benchmarks.environment import machine, other_jobs, provenance
from benchmarks.report import markdown
from benchmarks.timing import check_targets

RESULTS = Path(__file__).resolve().parent / "results"


def run(mode: str, out: Path | None, log: Callable[[str], None] = print) -> dict:
    """Run every configuration of ``mode``; write the JSON and the Markdown table.

    Each configuration's timing, each variant's memory and the scaling runs each run in a fresh
    child process of their own, one at a time; this process builds no model.
    """
    cases, scaling = plan(mode)
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, Any] = {
        "format": 1,
        "mode": mode,
        "started": started.isoformat(timespec="seconds"),
        "command": "python benchmarks/run.py" + ("" if mode == "full" else f" --{mode}"),
        "machine": machine(),
        "code": provenance(),
        "other_jobs_at_start": other_jobs(),
        "settings": {
            "source_prompt": SOURCE_PROMPT,
            "target_prompt": TARGET_PROMPT,
            "edit": "Replace",
            "cross_steps": CROSS_STEPS,
            "self_steps": SELF_STEPS,
            "guidance": GUIDANCE,
            "seed": SEED,
            "scheduler": "PNDM (skip_prk_steps, SD v1's)",
            "dtype": "float32",
        },
        "configs": [],
    }
    for case in cases:
        log(f"{case.name}: timing in a child process ({case.model}) …")
        spec = {"kind": "time", "case": dataclasses.asdict(case)}
        timing = run_child(spec, f"timing of {case.name}", log)
        report: dict[str, Any] = {
            "name": case.name,
            "case": dataclasses.asdict(case),
            "model": timing["model"],
            "build_s": timing["build_s"],
            "time": timing["time"],
        }
        if case.memory:
            report["memory"] = measure_memory(case, log)
        report["targets"] = check_targets(case, report)
        results["configs"].append(report)
    if scaling is not None:
        log("scaling on the small model, in a child process …")
        results["scaling"] = run_child({"kind": "scaling", **scaling}, "scaling", log)
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results["other_jobs_at_end"] = other_jobs()

    table = markdown(results)
    log("\n" + table)
    folder = out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y-%m-%dT%H%M")
    json_path = folder / (f"{mode}-{stamp}.json" if out is None else "results.json")
    json_path.write_text(json.dumps(results, indent=1, default=json_default) + "\n", "utf-8")
    (folder / ("latest.md" if out is None else "results.md")).write_text(table + "\n", "utf-8")
    log(f"wrote {json_path}")
    return results


def json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
