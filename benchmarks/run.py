"""Benchmark: a Prompt-to-Prompt edit costs what generating the same two images plainly costs.

Three variants generate the same source/target pair from one z_T, with the same steps and
guidance, on the same pipeline:

* ``stock``: ``StableDiffusionPipeline.__call__`` with both prompts as one batch of two and the
  pipeline's default (fused SDPA) attention: the floor;
* ``edit``: :func:`p2p_teach.edit` with Replace, cross- and self-attention injection on and the
  per-step history recorded at its default resolutions;
* ``explicit``: the same edit with attention probabilities materialised in every layer, as the
  original implementations do (:mod:`benchmarks.explicit`).

Time: each configuration (and the scaling runs) is timed in a fresh child process of its own
(``--child``), which builds the model, runs one untimed warm-up of each variant at the full step
count, then the variants in turn, stock, edit, explicit, stock, edit, explicit, …; each
variant's ratio to stock is the median of the per-repetition ratios. Memory: each variant runs
in a fresh child process of its own that builds the model, notes its resident memory, resets the
kernel's peak-RSS mark and runs the variant ``memory_runs`` times; the peak is the kernel's
high-water mark of resident memory (see :mod:`benchmarks.memory`). The parent process builds no
model: it starts the children one at a time and writes the results.

    python benchmarks/run.py --quick      # small model, SD v1.5 architecture at 256², scaling
    python benchmarks/run.py              # the full run (more repetitions, 5 steps, 512²)
    python benchmarks/run.py --smoke --out DIR   # 1 repetition, small model, 2 steps (tests)

Results: a table on stdout and in ``benchmarks/results/latest.md``, and JSON in
``benchmarks/results/<mode>-<date>.json`` (or ``results.md`` and ``results.json`` in
``--out DIR``).

This file is the command line only. The modules: :mod:`benchmarks.cases` (settings, targets,
each mode's configurations), :mod:`benchmarks.variants` (the three variants, timed),
:mod:`benchmarks.timing`, :mod:`benchmarks.scaling` and :mod:`benchmarks.children` (the
measurements, each in its child process), :mod:`benchmarks.environment` (machine, code,
other jobs), :mod:`benchmarks.suite` (one run, written out) and :mod:`benchmarks.report`
(the Markdown tables).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``p2p_teach`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.children import CHILDREN
from benchmarks.suite import json_default, run


def main(argv: list[str] | None = None) -> int:
    """The command line: a whole run of a mode, or (``--child``) one child process's work."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="about 10 minutes on 2 cores")
    modes.add_argument("--smoke", action="store_true", help="1 repetition, small model, 2 steps")
    modes.add_argument("--child", help=argparse.SUPPRESS)  # a child process's spec (JSON)
    parser.add_argument("--out", type=Path, help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        if spec.get("kind") not in CHILDREN:
            parser.error(f"--child: unknown kind {spec.get('kind')!r} (one of {sorted(CHILDREN)})")

        def child_log(message: str) -> None:
            print("LOG " + message, flush=True)

        report = CHILDREN[spec["kind"]](spec, child_log)
        print("RESULT " + json.dumps(report, default=json_default), flush=True)
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    log(f"p2p_teach benchmark ({mode}): {shlex.join(sys.argv)}")
    run(mode, args.out, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
