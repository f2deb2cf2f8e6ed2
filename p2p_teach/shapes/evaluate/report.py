"""The results against the targets, as a plain-text table."""

from __future__ import annotations

from p2p_teach.schedules import DEFAULT_SELF_STEPS

from .swaps import SHAPE_SWAP_STEPS, SHORTER_CROSS

TARGETS = {  # name: (path of keys into the results, lower bound)
    "colour": (("single_object", "colour_accuracy"), 0.95),
    "shape": (("single_object", "shape_accuracy"), 0.80),
    "position": (("single_object", "position_accuracy"), 0.80),
    "two objects": (("two_objects", "both_right_share"), 0.70),
    "attention ratio": (("single_object", "attention_ratio_mean"), 2.0),
    # a colour swap whose layout the seed decides (no position word), as in the paper
    "swap IoU, seed layout": (("colour_swap", "position_unnamed", "iou_median_injected"), 0.80),
    "swap IoU, place named": (("colour_swap", "iou_median_injected"), 0.80),
    "edit success": (("colour_swap", "edit_success_share"), 0.80),
}


def result_at(results: dict, path: tuple[str, ...]) -> float | None:
    """The value at ``path`` in the nested results, or None where a part is missing."""
    value = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def summary(results: dict) -> str:
    """A plain-text table of the results against the targets."""
    lines = ["measure                 value    target"]
    for name, (path, target) in TARGETS.items():
        value = result_at(results, path)
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"{name:<22} {shown:>7}   ≥ {target}")
    swap = results.get("colour_swap", {})
    if "iou_median_no_injection" in swap:
        lines += colour_swap_lines(swap)
        if "shape_swap" in results:
            lines.append(shape_swap_line(results["shape_swap"]))
        seconds = swap["edit_25_steps_seconds_recording"]
        lines.append(f"{'2-prompt edit, 25 steps':<22} {seconds:>6.2f}s   < 2 s")
    lines.append(
        f"shape classifier held-out accuracy {results['shape_classifier_heldout_accuracy']:.3f}"
    )
    if results.get("guidance_sweep"):
        lines.append("guidance   colour   shape   position")
        for row in results["guidance_sweep"]:
            accuracies = (row[f"{name}_accuracy"] for name in ("colour", "shape", "position"))
            lines.append(f"{row['guidance']:>8g}   " + "   ".join(f"{a:.3f}" for a in accuracies))
    return "\n".join(lines)


def colour_swap_lines(swap: dict) -> list[str]:
    """The colour swaps' lines of the summary: plain runs, size and place left to the seed,
    the injection variants, side-word swaps and other prompts."""
    lines = []
    for name, section in (("seed layout", swap["position_unnamed"]), ("place named", swap)):
        plain = section["iou_median_no_injection"]
        lines.append(f"{'plain, ' + name:<22} {plain:>7.3f}   clearly lower")
    open_size = swap["size_unnamed"]
    lines.append(f"size unnamed: swap IoU {open_size['iou_median_injected']:.3f} injected, "
                 f"{open_size['iou_median_no_injection']:.3f} not; background kept "
                 f"{open_size['background_kept_injected']:.3f} injected, "
                 f"{open_size['background_kept_no_injection']:.3f} not")  # fmt: skip
    free = swap["position_unnamed"]
    spread = ", ".join(f"{name} {share:.2f}"
                       for name, share in free["source_position_shares"].items())  # fmt: skip
    lines.append(f"position left to the seed: swap IoU "
                 f"{free['iou_median_injected']:.3f} injected, "
                 f"{free['iou_median_no_injection']:.3f} not; the object stays put "
                 f"{free['kept_source_position_injected']:.3f} injected, "
                 f"{free['kept_source_position_no_injection']:.3f} not; "
                 f"edit success {free['edit_success_share']:.3f}; "
                 f"sources at {spread}")  # fmt: skip
    for key, label in (("self_sd_layers", "self-attention only in SD's layers (4×4 here)"),
                       ("self_sd_steps", f"self-attention over SD's {DEFAULT_SELF_STEPS:g} "
                                         "of the steps"),
                       ("shorter_cross", f"cross-attention over {SHORTER_CROSS:g} of the "
                                         "steps")):  # fmt: skip
        lines.append(f"{label}: swap IoU {swap[key]['iou_median_injected']:.3f}, edit "
                     f"success {swap[key]['edit_success_share']:.3f}")  # fmt: skip
    if "position_swap" in swap:
        kept = swap["position_swap"]["kept_source_position_injected"]
        moved = swap["position_swap"]["moved_to_new_position_no_injection"]
        lines.append(f"side-word swap: the object stays put {kept:.3f} injected; it moves "
                     f"to the new side {moved:.3f} without injection")  # fmt: skip
    if "other_prompts" in swap:
        other = swap["other_prompts"]
        for key, label in (("place_named", "place named"), ("position_unnamed", "seed layout")):
            shorter = other[key]["shorter_cross"]
            lines.append(f"{other['swaps']} other colour swaps, {label}: swap IoU "
                         f"{other[key]['iou_median_injected']:.3f} injected, "
                         f"{other[key]['iou_median_no_injection']:.3f} not; edit success "
                         f"{other[key]['edit_success_share']:.3f}; with cross "
                         f"{SHORTER_CROSS:g}: IoU {shorter['iou_median_injected']:.3f}, "
                         f"success {shorter['edit_success_share']:.3f}")  # fmt: skip
    return lines


def shape_swap_line(shape_swap: dict) -> str:
    """The shape swaps' line of the summary: the share of new shapes drawn, per injection."""
    parts = [f"{label} {shape_swap[key]['new_shape_share']:.3f}"
             for key, label in (("injected", "injected"),
                                ("self_sd_steps", f"self {DEFAULT_SELF_STEPS:g}"),
                                ("shorter_injection", f"cross and self {SHAPE_SWAP_STEPS:g}"),
                                ("no_injection", "none"))]  # fmt: skip
    return "shape swap, new shape drawn: " + ", ".join(parts)
