"""The command line of ``python -m p2p_teach.shapes.evaluate``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from p2p_teach.shapes import load_shapes_pipeline

from .measures import evaluate
from .report import summary
from .settings import EvalSettings

DESCRIPTION = (
    "Measure the shapes model: ``python -m p2p_teach.shapes.evaluate [--quick] [--weights DIR]``."
)


def main(argv: list[str] | None = None) -> dict:
    """Command line: evaluate and print (and optionally save) the results."""
    parser = argparse.ArgumentParser(
        prog="python -m p2p_teach.shapes.evaluate", description=DESCRIPTION
    )
    parser.add_argument("--weights", type=Path, default=None, help="pipeline folder")
    parser.add_argument("--quick", action="store_true", help="a handful of samples (CI)")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--grid", type=Path, default=None, help="save a grid of samples here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = EvalSettings.quick() if args.quick else EvalSettings()
    if args.guidance is not None:
        settings.guidance = args.guidance
    start = time.time()
    pipe = load_shapes_pipeline(args.weights)
    results = evaluate(pipe, settings, args.grid)
    results["total_seconds"] = time.time() - start
    print(summary(results))
    print(f"total {results['total_seconds']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return results
