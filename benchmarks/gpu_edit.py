"""On a CUDA GPU: stock against edit against the explicit baseline, SD v1.5's architecture, fp16.

The same three variants as ``benchmarks/run.py`` (its README: *stock* is the pipeline's own
call with both prompts as one batch, *edit* is ``p2p_teach.edit`` with Replace and the default
history, *explicit* materialises the attention probabilities as the original implementations
do), on SD v1.5's architecture with random weights (``benchmarks/sd15.py``, no download) at
512², fp16, on the GPU. Each repetition runs the three in turn after one untimed warm-up of
each; times are medians, with ``torch.cuda.synchronize`` around each run; the peak is
``torch.cuda.max_memory_allocated`` of each variant's runs, reset before them.

    python benchmarks/gpu_edit.py --out /tmp/gpu_edit.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``p2p_teach`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

SOURCE_PROMPT = "photo of a cat riding on a bicycle"
TARGET_PROMPT = "photo of a cat riding on a motorcycle"
GUIDANCE = 7.5
SEED = 1
VARIANTS = ("stock", "edit", "explicit")


def run_variant(variant: str, pipe, noise: torch.Tensor, steps: int) -> list:
    """The source/target pair from one z_T with ``variant``; returns the two PIL images."""
    if variant == "stock":
        return list(pipe(prompt=[SOURCE_PROMPT, TARGET_PROMPT], num_inference_steps=steps,
                         guidance_scale=GUIDANCE, latents=noise.expand(2, *noise.shape[1:]),
                         output_type="pil").images)  # fmt: skip
    from benchmarks.explicit import explicit_edit
    from p2p_teach.edits import Replace
    from p2p_teach.engine import edit

    run = {"edit": edit, "explicit": explicit_edit}[variant]
    result = run(pipe, SOURCE_PROMPT, TARGET_PROMPT, edit=Replace(), seed=SEED, steps=steps,
                 guidance=GUIDANCE, cross_steps=0.8, self_steps=0.4, progress=False)  # fmt: skip
    return list(result.images)


def measure(pipe, steps: int, repetitions: int) -> dict:
    """Median seconds and peak GPU memory of each variant; whether the images are sound."""
    generator = torch.Generator("cpu").manual_seed(SEED)
    shape = (1, pipe.unet.config.in_channels, 64, 64)  # (1, 4, 64, 64): 512² images
    noise = torch.randn(shape, generator=generator).to("cuda", torch.float16)
    images, seconds, peaks = {}, {v: [] for v in VARIANTS}, {}
    for variant in VARIANTS:  # warm-up, and each variant's peak
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        images[variant] = run_variant(variant, pipe, noise, steps)
        torch.cuda.synchronize()
        peaks[variant] = torch.cuda.max_memory_allocated() / 2**30
    for _ in range(repetitions):
        for variant in VARIANTS:
            torch.cuda.synchronize()
            start = time.perf_counter()
            run_variant(variant, pipe, noise, steps)
            torch.cuda.synchronize()
            seconds[variant].append(time.perf_counter() - start)
    medians = {variant: statistics.median(values) for variant, values in seconds.items()}
    arrays = {v: [np.asarray(image, dtype=np.int16) for image in images[v]] for v in VARIANTS}
    return {
        "seconds_median": medians,
        "seconds_all": seconds,
        "ratio_to_stock": {v: medians[v] / medians["stock"] for v in VARIANTS},
        "peak_gib": peaks,
        "images_not_black": {v: all(a.std() > 1 for a in arrays[v]) for v in VARIANTS},
        "source_edit_vs_stock_max_levels": int(
            np.abs(arrays["edit"][0] - arrays["stock"][0]).max()
        ),
        "edit_vs_explicit_max_levels": max(
            int(np.abs(a - b).max()) for a, b in zip(arrays["edit"], arrays["explicit"])
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_edit.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    from benchmarks.sd15 import build_sd15_random_pipeline

    pipe = build_sd15_random_pipeline().to("cuda", torch.float16)
    pipe.set_progress_bar_config(disable=True)
    results = {
        "settings": {
            "steps": args.steps,
            "repetitions": args.repetitions,
            "size": 512,
            "dtype": "float16",
            "guidance": GUIDANCE,
        },  # fmt: skip
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        **measure(pipe, args.steps, args.repetitions),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), "utf-8")
    print(json.dumps(results["seconds_median"]), json.dumps(results["peak_gib"]))
    return results


if __name__ == "__main__":
    main()
