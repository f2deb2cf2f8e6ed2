"""The results as Markdown tables (what the README's Performance section shows)."""

from __future__ import annotations

from benchmarks.cases import GUIDANCE


def markdown(results: dict) -> str:
    """The results as Markdown tables (what the README's Performance section shows)."""
    info = results["machine"]
    lines = [
        f"Measured {results['started'][:16].replace('T', ' ')} UTC on {info['cpu']}, "
        f"{info['cores']} cores ({info['torch_threads']} torch threads), "
        f"{info['ram_gb']} GB RAM; torch {info['torch']}, diffusers {info['diffusers']}, "
        f"transformers {info['transformers']}; fp32, PNDM, guidance {GUIDANCE}. "
        f"Command: `{results['command']}`." + _other_jobs_note(results),
        "",
        "| configuration | variant | median time | time / stock (range over repetitions) "
        "| peak RSS | peak / stock | peak above the built model: whole run | … denoising only "
        "| history |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    unreliable = False
    for config in results["configs"]:
        for variant in config["case"]["variants"]:
            row, refused = _variant_row(config, variant)
            lines.append(row)
            unreliable = unreliable or refused
    if unreliable:
        lines += [
            "",
            "† unreliable: the kernel refused to reset the peak-RSS mark (/proc/self/clear_refs) "
            "in this variant's child process, so its peak may be the model build's, not the run's.",
        ]
    lines += _notes(results["configs"])
    if results.get("scaling"):
        lines += _scaling_tables(results["scaling"])
    return "\n".join(lines)


def _variant_row(config: dict, variant: str) -> tuple[str, bool]:
    """One variant's row of the main table, and whether its peak-RSS reset was refused."""
    timing = config["time"]
    mem = config.get("memory", {})
    ratio = timing.get("ratio_to_stock", {}).get(variant)
    per = mem.get("per_variant", {}).get(variant)
    mem_ratio = mem.get("ratio_to_stock", {}).get(variant)
    history = "—"
    if variant == "edit" and "history" in timing:
        h = timing["history"]
        history = f"{h['mb']:.3f} MB ({h['mb_50_steps']:.2f} MB at 50 steps)"
    elif variant == "explicit" and "explicit_history_mb" in timing:
        history = f"{timing['explicit_history_mb']:.3f} MB"
    stock_row = variant == "stock"
    time_ratio = "1" if stock_row else f"{ratio:.3f}" if ratio else "—"
    spread = timing.get("ratio_per_repetition", {}).get(variant)
    if ratio and spread and len(spread) > 1:
        time_ratio += f" ({min(spread):.2f}–{max(spread):.2f})"
    peak = f"{per['peak_mb']:.0f} MB" if per else "—"
    peak_ratio = "1" if stock_row and per else (f"{mem_ratio['peak']:.3f}" if mem_ratio else "—")
    own_peak = f"{per['delta_mb']:.0f} MB" if per else "—"
    denoising = f"{per['denoising_delta_mb']:.0f} MB" if per else "—"
    if mem_ratio:
        own_peak += f" ({mem_ratio['delta']:.2f}×)"
        denoising += f" ({mem_ratio['denoising_delta']:.2f}×)"
    refused = bool(per) and not per.get("peak_reset", True)
    if refused:
        peak, own_peak, denoising = (f"{cell} †" for cell in (peak, own_peak, denoising))
    row = (
        f"| {config['name']} | {variant} | {timing['median_s'][variant]:.2f} s | "
        f"{time_ratio} | {peak} | {peak_ratio} | {own_peak} | {denoising} | {history} |"
    )
    return row, refused


def _notes(configs: list[dict]) -> list[str]:
    """The lines under the main table: memory runs, targets, other processes' load, and how
    far the explicit baseline's edit is from the engine's."""
    lines = []
    memory_runs = [
        f"{config['name']} {config['case'].get('memory_runs', 1)}"
        for config in configs
        if config.get("memory")
    ]
    if memory_runs:
        lines += [
            "",
            "Memory runs per variant (the median is shown; 1 means a single sample): "
            + "; ".join(memory_runs)
            + ".",
        ]
    checks = [
        f"{config['name']}: {name} {check['value']:.3f} "
        f"({'≤' if name != 'explicit_above_edit' else '>'} {check['limit']:.3f}) "
        + _check_state(check)
        for config in configs
        for name, check in config["targets"].items()
    ]
    if checks:
        lines += ["", "Targets: " + "; ".join(checks) + "."]
    loads = [
        f"{config['name']} median {load['median']:.0%}, max {load['max']:.0%}"
        for config in configs
        for load in [config["time"].get("others_load", {})]
        if load.get("median") is not None
    ]
    if loads:
        lines += [
            "",
            "Share of the cores other processes used during the timed runs: "
            + "; ".join(loads)
            + ".",
        ]
    for config in configs:
        agree = config["time"].get("agreement")
        if agree:
            lines.append(
                f"\n{config['name']}: explicit baseline vs engine: latents differ by at most "
                f"{agree['latents_max_abs_diff']:.2e} (of {agree['latents_max_abs']:.1f}), "
                f"history by {agree['history_max_abs_diff']:.2e}, images by "
                f"{agree['images_max_abs_diff']} of 255 levels; edit's source image vs stock: "
                f"{agree.get('source_image_vs_stock_max_abs_diff', '—')} levels."
            )
    return lines


def _check_state(check: dict) -> str:
    if check.get("unreliable"):
        return "unreliable (peak reset refused)"
    return "met" if check["met"] else "MISSED"


def _scaling_tables(scaling: dict) -> list[str]:
    """The scaling runs: the linear fits, time against steps, history against record sets."""
    fit, stock_fit = scaling["edit_time_fit"], scaling["stock_time_fit"]
    lines = [
        "",
        f"Scaling on the small model ({scaling['image_side']}²): edit time ≈ "
        f"{fit['intercept_s']:.2f} s + {fit['seconds_per_step'] * 1000:.1f} ms × steps "
        f"(R² {fit['r_squared']:.4f}); stock ≈ {stock_fit['intercept_s']:.2f} s + "
        f"{stock_fit['seconds_per_step'] * 1000:.1f} ms × steps "
        f"(R² {stock_fit['r_squared']:.4f}).",
        "",
        "| steps | stock | edit | edit / stock | edit per step | history | others' load |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in scaling["by_steps"]:
        lines.append(
            f"| {row['steps']} | {row['median_s']['stock']:.2f} s | "
            f"{row['median_s']['edit']:.2f} s | {row['ratio_to_stock']:.3f} | "
            f"{row['edit_s_per_step'] * 1000:.1f} ms | {row['history_mb']:.3f} MB | "
            f"{_percent(row.get('others_load'))} |"
        )
    lines += [
        "",
        f"| record ({scaling['record_steps']} steps) | layers kept | map pixels | "
        "history | formula | edit time | edit / stock |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in scaling["by_record"]:
        lines.append(
            f"| {row['record']} | {', '.join(row['layers']) or 'none'} | {row['pixels']} | "
            f"{row['history_mb']:.4f} MB | {row['formula_mb']:.4f} MB | "
            f"{row['edit_median_s']:.2f} s | {row['ratio_to_stock']:.3f} |"
        )
    lines.append(
        f"\n(stock at {scaling['record_steps']} steps: {scaling['record_stock_median_s']:.2f} s)"
    )
    return lines


def _other_jobs_note(results: dict) -> str:
    """A sentence on the project's long jobs that shared the CPU during the run."""
    states: dict[str, list[bool | None]] = {}
    for when in ("start", "end"):
        for job, state in results[f"other_jobs_at_{when}"].items():
            states.setdefault(job, []).append(state)
    shared = [job for job, seen in states.items() if any(seen)]
    unknown = [job for job, seen in states.items() if not any(seen) and None in seen]
    note = ""
    if shared:
        note += f" The shapes model's {' and '.join(shared)} job shared the CPU during this run."
    if unknown:
        note += f" Whether the {' and '.join(unknown)} job ran could not be checked."
    return note


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"
