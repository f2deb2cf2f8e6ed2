"""Benchmark: null-text inversion of drawings the built-in model never saw, and editing them.

On held-out drawings of :mod:`p2p_teach.shapes.data` (seed 0 from index 50,000 on; the model
trained on indices 0–29,999 of seed 0, and its card measured the VAE on 30,000–30,255 and
40,000–40,255), it measures:

* reconstruction PSNR against the drawing (pixels in [−1, 1], as the model card's VAE PSNR) of
  null-text inversion and of plain DDIM inversion (the empty prompt's embedding), both at the
  model's guidance and at 7.5, beside the VAE alone (encode, decode: the ceiling) and plain
  DDIM inversion without guidance (scale 1);
* a colour swap of each one-object drawing (*a big red circle* → *a big blue circle*) edited
  from its inversion: the median IoU of the edit's object mask with the drawing's, and the
  share of edits whose object has the new colour (:mod:`p2p_teach.shapes.evaluate`'s readers);
* the time of one inversion plus its edit at the defaults (wall clock and process CPU time;
  the load average says how busy the machine was).

    python benchmarks/inversion.py                    # about 10 CPU minutes on the built-in model
    python benchmarks/inversion.py --drawings 2 --swaps 1 --out /tmp/inv   # a smoke run
    python benchmarks/inversion.py --model sd15-random --timing-only  # 512², for a GPU

Results: a summary on stdout and JSON in ``benchmarks/results/inversion-<date>.json`` (or
``inversion.json`` in ``--out DIR``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``p2p_teach`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from p2p_teach.defaults import model_defaults
from p2p_teach.inversion import (
    DEFAULT_INNER_STEPS,
    DEFAULT_STEPS,
    decode_latents,
    encode_image,
    invert,
    psnr,
    reconstruct,
)
from p2p_teach.models import load_pipeline
from p2p_teach.shapes import data as shapes_data
from p2p_teach.shapes import evaluate

HELD_OUT_SEED = 0
HELD_OUT_START = 50_000  # training used 0–29,999 of seed 0; the card's VAE checks 30,000+/40,000+
SD_GUIDANCE = 7.5
TARGETS = {"null_text_psnr": 30.0, "iou_median": 0.85, "new_colour_share": 0.9, "seconds": 30.0}


def held_out_drawings(count: int, start: int = HELD_OUT_START) -> list[shapes_data.ShapeSample]:
    """The first ``count`` samples of seed 0 from index ``start`` on (one or two objects)."""
    return [shapes_data.sample(index, HELD_OUT_SEED) for index in range(start, start + count)]


def one_object_drawings(count: int, start: int = HELD_OUT_START) -> list[shapes_data.ShapeSample]:
    """The first ``count`` one-object samples of seed 0 from index ``start`` on."""
    found, index = [], start
    while len(found) < count:
        item = shapes_data.sample(index, HELD_OUT_SEED)
        if len(item.objects) == 1:
            found.append(item)
        index += 1
    return found


def swap_colour(item: shapes_data.ShapeSample, rng: np.random.Generator) -> tuple[str, str]:
    """(target caption, new colour): the object's colour word replaced by another colour."""
    old = item.objects[0].colour
    new = str(rng.choice([colour for colour in shapes_data.COLOURS if colour != old]))
    return " ".join(new if word == old else word for word in item.words), new


def timed(function, *args, **kwargs) -> tuple[Any, float, float]:
    """(result, wall seconds, process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def reconstruction_row(pipe, item, args) -> dict:
    """The six PSNRs of one drawing, and the time of its inversion at the model's guidance."""
    guidance = model_defaults(pipe).guidance
    kwargs = {"steps": args.steps, "inner_steps": args.inner_steps, "progress": False}
    at_model, wall, cpu = timed(invert, pipe, item.image, item.caption, guidance=guidance, **kwargs)
    at_sd = invert(pipe, item.image, item.caption, guidance=SD_GUIDANCE, **kwargs)
    with torch.no_grad():
        vae_only = decode_latents(pipe, encode_image(pipe, at_model.image))[0]
    unguided = reconstruct(pipe, at_model, guidance=1.0, null_text=False)
    return {
        "caption": item.caption,
        "objects": len(item.objects),
        "vae_psnr": psnr(item.image, vae_only),
        "ddim_psnr_guidance_1": psnr(item.image, unguided),
        "null_text_psnr_model_guidance": at_model.psnr,
        "ddim_psnr_model_guidance": at_model.ddim_psnr,
        "null_text_psnr_7.5": at_sd.psnr,
        "ddim_psnr_7.5": at_sd.ddim_psnr,
        "inner_steps_used_model_guidance": sum(map(len, at_model.inner_losses)),
        "inner_steps_used_7.5": sum(map(len, at_sd.inner_losses)),
        "invert_seconds": wall,
        "invert_cpu_seconds": cpu,
    }


def swap_row(pipe, item, rng, args) -> dict:
    """One colour swap edited from the drawing's inversion at the model's guidance."""
    from p2p_teach.engine import edit

    target, new_colour = swap_colour(item, rng)
    kwargs = {"steps": args.steps, "inner_steps": args.inner_steps, "progress": False,
              "guidance": args.swap_guidance}  # fmt: skip
    inversion, invert_wall, invert_cpu = timed(invert, pipe, item.image, item.caption, **kwargs)
    result, edit_wall, edit_cpu = timed(
        edit, pipe, item.caption, target, inversion=inversion, cross_steps=args.cross_steps,
        target_null_steps=args.target_null_steps, record="none", progress=False,
    )  # fmt: skip
    drawing_mask = item.masks[0]  # (64, 64) bool, the drawing's own
    edited = np.asarray(result.edited_image.convert("RGB"))  # (64, 64, 3)
    source = np.asarray(result.source_image.convert("RGB"))
    edited_mask = evaluate.foreground(edited)
    return {
        "caption": item.caption,
        "target": target,
        "new_colour": new_colour,
        "iou_with_drawing": evaluate.swap_iou(drawing_mask, edited_mask),
        "iou_with_source": evaluate.swap_iou(evaluate.foreground(source), edited_mask),
        "edited_colour": evaluate.object_colour(edited, edited_mask),
        "source_psnr": psnr(item.image, source),
        "invert_seconds": invert_wall,
        "invert_cpu_seconds": invert_cpu,
        "edit_seconds": edit_wall,
        "edit_cpu_seconds": edit_cpu,
    }


def mean(rows: list[dict], key: str) -> float:
    return float(np.mean([row[key] for row in rows]))


def median(rows: list[dict], key: str) -> float:
    return float(statistics.median(row[key] for row in rows))


def summarise(psnr_rows: list[dict], swap_rows: list[dict]) -> dict:
    """Means of the PSNRs, the swaps' median IoU and new-colour share, median times, targets."""
    keys = [k for k in (psnr_rows[0] if psnr_rows else {}) if "psnr" in k]
    summary: dict[str, Any] = {f"mean_{key}": mean(psnr_rows, key) for key in keys}
    if swap_rows:
        total = [row["invert_seconds"] + row["edit_seconds"] for row in swap_rows]
        total_cpu = [row["invert_cpu_seconds"] + row["edit_cpu_seconds"] for row in swap_rows]
        matches = [row["edited_colour"] == row["new_colour"] for row in swap_rows]
        summary.update({
            "swap_iou_median_with_drawing": median(swap_rows, "iou_with_drawing"),
            "swap_iou_median_with_source": median(swap_rows, "iou_with_source"),
            "new_colour_share": float(np.mean(matches)),
            "invert_plus_edit_seconds_median": statistics.median(total),
            "invert_plus_edit_cpu_seconds_median": statistics.median(total_cpu),
            "invert_plus_edit_seconds_max": max(total),
        })  # fmt: skip
    summary["targets"] = targets(summary)
    return summary


def targets(summary: dict) -> dict:
    """Each target of the issue with the measured value and whether it is met."""
    met = {}
    if "mean_null_text_psnr_model_guidance" in summary:
        model_null = summary["mean_null_text_psnr_model_guidance"]
        sd_null = summary["mean_null_text_psnr_7.5"]
        met["null_text_psnr_at_least_30_both"] = min(model_null, sd_null) >= 30.0
        met["null_text_above_ddim_model_guidance"] = (
            model_null > summary["mean_ddim_psnr_model_guidance"]
        )
        met["null_text_above_ddim_7.5"] = sd_null > summary["mean_ddim_psnr_7.5"]
    if "swap_iou_median_with_drawing" in summary:
        met["iou_median_at_least_0.85"] = summary["swap_iou_median_with_drawing"] >= 0.85
        met["new_colour_share_at_least_0.9"] = summary["new_colour_share"] >= 0.9
        met["invert_plus_edit_under_30_s"] = summary["invert_plus_edit_seconds_median"] < 30.0
    return met


def timing_only(pipe, args) -> dict:
    """One inversion and one edit of a resized drawing, timed (for a large model on a GPU)."""
    from p2p_teach.engine import edit

    item = one_object_drawings(1)[0]
    kwargs = {"steps": args.steps, "inner_steps": args.inner_steps, "progress": False}
    invert(pipe, item.image, item.caption, steps=2, inner_steps=1, progress=False)  # warm-up
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    inversion, wall, cpu = timed(invert, pipe, item.image, item.caption, **kwargs)
    sync()
    target, _ = swap_colour(item, np.random.default_rng(0))
    _, edit_wall, _ = timed(edit, pipe, item.caption, target, inversion=inversion,
                            record="none", progress=False)  # fmt: skip
    sync()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"invert_seconds": wall, "invert_cpu_seconds": cpu, "edit_seconds": edit_wall,
            "inner_steps_used": sum(map(len, inversion.inner_losses)),
            "cuda_peak_gib": peak}  # fmt: skip


def build_pipeline(args) -> Any:
    if args.model == "sd15-random":
        from benchmarks.sd15 import build_sd15_random_pipeline

        pipe = build_sd15_random_pipeline()
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        return pipe.to(device, dtype)  # SD v1.5's UNet: 512² images
    return load_pipeline(args.model, device=args.device, verbose=False)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=16, help="drawings for the PSNRs")
    parser.add_argument("--swaps", type=int, default=16, help="one-object colour swaps")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--inner-steps", type=int, default=DEFAULT_INNER_STEPS)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--swap-guidance",
        type=float,
        default=None,
        help="guidance of the swaps' inversion and edit (default: the model's)",
    )
    parser.add_argument("--cross-steps", type=float, default=0.8,
                        help="the swaps' cross-attention injection (the paper's 0.8)")  # fmt: skip
    parser.add_argument("--target-null-steps", type=float, default=None,
                        help="the target's share of the null embeddings (default: the model's)")
    parser.add_argument("--start", type=int, default=HELD_OUT_START,
                        help="first held-out index (50000: the default set; 60000: a second)")
    parser.add_argument("--model", default="builtin", help="builtin, sd15-random or a model id")
    parser.add_argument("--device", default=None)
    parser.add_argument("--timing-only", action="store_true", help="time one inversion + edit")
    parser.add_argument("--out", type=Path, default=None, help="folder for inversion.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "guidance": model_defaults(pipe).guidance,
            "held_out": f"seed {HELD_OUT_SEED}, indices {args.start}+",
        },  # fmt: skip
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": os.getloadavg(),
            "torch": torch.__version__,
            "device": str(pipe._execution_device),
            "dtype": str(pipe.unet.dtype),
        },  # fmt: skip
    }
    if args.timing_only:
        results["timing"] = timing_only(pipe, args)
    else:
        psnr_rows = [
            reconstruction_row(pipe, item, args)
            for item in held_out_drawings(args.drawings, start=args.start)
        ]
        rng = np.random.default_rng(HELD_OUT_SEED)
        swaps = one_object_drawings(args.swaps, start=args.start)
        swap_rows = [swap_row(pipe, item, rng, args) for item in swaps]
        results.update({"summary": summarise(psnr_rows, swap_rows), "psnr": psnr_rows,
                        "swaps": swap_rows})  # fmt: skip
    results["machine"]["load_average_after"] = os.getloadavg()
    results["seconds"] = time.perf_counter() - started
    write(results, args.out)
    print(json.dumps(results.get("summary", results.get("timing")), indent=2))
    return results


def write(results: dict, out: Path | None) -> Path:
    if out is None:
        stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M")
        path = Path(__file__).resolve().parent / "results" / f"inversion-{stamp}.json"
    else:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "inversion.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2, default=str), "utf-8")
    os.replace(temporary, path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
