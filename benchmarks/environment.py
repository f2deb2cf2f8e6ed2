"""What the numbers were measured on: the machine, the code and weights, other long jobs."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

# Jobs of this project that load the CPU for a long time; the results say whether they ran.
TRAINING_JOB = "shapes.train"
EVALUATION_JOB = "shapes.evaluate"
PROC = Path("/proc")


def machine() -> dict:
    """What the numbers were measured on."""
    import diffusers
    import transformers

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": round(pages / 1e9, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


def job_running(pattern: str) -> bool | None:
    """Whether another process's command line contains ``pattern`` (None: cannot tell).

    Reads ``/proc/<pid>/cmdline`` (what ``pgrep -f`` does, without needing procps); without
    ``/proc`` it asks ``pgrep`` if there is one.
    """
    if PROC.is_dir():
        own = os.getpid()
        for entry in PROC.iterdir():
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                command = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:  # the process has exited, or its cmdline is not ours to read
                continue
            if pattern in command:
                return True
        return False
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return None
    found = subprocess.run([pgrep, "-f", pattern], capture_output=True, check=False)
    return {0: True, 1: False}.get(found.returncode)


def other_jobs() -> dict[str, bool | None]:
    """Which of this project's long CPU jobs run now: training, evaluation (None: unknown)."""
    return {"training": job_running(TRAINING_JOB), "evaluation": job_running(EVALUATION_JOB)}


def provenance() -> dict:
    """What was measured: the code's commit (and files changed since) and the built-in weights.

    Every field is None where it cannot be found (no git, not a checkout).
    """
    root = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"commit": None, "changed_files": None, "builtin_weights_sha256": None}
    git = shutil.which("git")
    if git is not None:
        head = subprocess.run(
            [git, "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
        status = subprocess.run(
            [git, "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
        if status.returncode == 0:
            info["changed_files"] = [line[3:] for line in status.stdout.splitlines()]
    from p2p_teach.shapes import WEIGHTS_DIR as weights

    files = sorted(path for path in weights.rglob("*") if path.is_file())
    if files:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(weights).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        info["builtin_weights_sha256"] = digest.hexdigest()
    return info
