"""``python -m benchmarks [--quick] [--only NAME,...] [--out FILE.json]``: NAME among craft,
transfer, e2e, amp, job, analysis.

Prints the machine and a table of throughputs and ratios (frogs over the bare PyTorch loop, and
over the adversarial-robustness-toolbox where it has the same attack), all measured in this run.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from benchmarks.timing import machine
from frogs.store.atomic import atomic_write

log = logging.getLogger("benchmarks")

BENCHMARKS = ("craft", "transfer", "e2e", "amp", "job", "analysis")


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; ``QUICK`` fits in about two minutes on 2 busy cores."""

    repeats: int
    craft_poisons: tuple[int, ...]
    craft_iters: int
    art_iters: int
    art_poisons: tuple[int, ...]
    e2e_images: int
    e2e_epochs: int
    transfer_iters: int
    job_repeats: int
    analysis_records: int


# Sized for 2 CPU cores; ART crafts one poison at a time, so its poison-iterations per second
# do not depend on the number of poisons and it is measured at 1 and 10. Crafting runs 40
# iterations in the full run so that the one extra forward pass every crafting run makes (the
# final feature distance, which the trial record needs) weighs what it does in practice (0.1 %
# of the paper's 1,000 iterations), not 20 % as with 5.
FULL = Sizes(5, (1, 10, 50), 40, 4, (1, 10), 1024, 1, 100, 3, 100_000)
QUICK = Sizes(2, (1, 10), 5, 2, (10,), 256, 1, 20, 1, 100_000)


@dataclass
class Row:
    name: str
    unit: str
    frogs: float
    bare: float | None = None
    peer: float | None = None
    vs_bare: float | None = None
    vs_peer: float | None = None


def run_all(
    only: Sequence[str], sizes: Sizes, cache_dir: str | None = None
) -> tuple[dict[str, object], list[Row]]:
    """Run the selected benchmarks; return the JSON figures and the table rows."""
    device = torch.device("cpu")
    figures: dict[str, object] = {"machine": machine(), "sizes": sizes.__dict__}
    rows: list[Row] = []
    if "craft" in only:
        from benchmarks.craft import run_craft

        craft = run_craft(
            sizes.craft_poisons,
            sizes.craft_iters,
            sizes.art_iters,
            sizes.repeats,
            device,
            art_poisons=sizes.art_poisons,
        )
        detail = {}
        for count, m in craft.by_poisons.items():
            has_art = "art" in m.rates
            row = Row(
                f"craft, {count} poison{'s' * (count > 1)}",
                "poison-it/s",
                m.median("frogs"),
                m.median("bare"),
                m.median("art") if has_art else None,
                m.ratio("frogs", "bare"),
                m.ratio("frogs", "art") if has_art else None,
            )
            rows.append(row)
            detail[str(count)] = row.__dict__
        headline = craft.by_poisons[10 if 10 in craft.by_poisons else max(craft.by_poisons)]
        figures["craft_vs_bare"] = headline.ratio("frogs", "bare")
        if "art" in headline.rates:
            figures["craft_vs_art"] = headline.ratio("frogs", "art")
        figures["craft"] = detail
    if "transfer" in only:
        from benchmarks.trial import run_transfer

        m = run_transfer(sizes.transfer_iters, sizes.repeats, cache_dir)
        figures["transfer_trials_per_min"] = m.median("frogs")
        figures["transfer_cache_speedup"] = m.ratio("frogs", "recompute")
        rows.append(
            Row(
                f"transfer trial, FMNIST, {sizes.transfer_iters} it",
                "trials/min",
                m.median("frogs"),
                m.median("recompute"),
                vs_bare=m.ratio("frogs", "recompute"),
            )
        )
    if "e2e" in only:
        from benchmarks.train import run_train

        m = run_train(sizes.e2e_images, sizes.e2e_epochs, sizes.repeats, device)
        figures["e2e_vs_bare"] = m.ratio("frogs", "bare")
        figures["e2e_images_per_s"] = m.median("frogs")
        rows.append(
            Row(
                "end-to-end retrain",
                "images/s",
                m.median("frogs"),
                m.median("bare"),
                vs_bare=m.ratio("frogs", "bare"),
            )
        )
    if "amp" in only:
        from benchmarks.train import run_train
        from frogs.models.precision import cpu_has_native_bf16

        m = run_train(sizes.e2e_images, sizes.e2e_epochs, sizes.repeats, device, amp=True)
        native = cpu_has_native_bf16()
        figures["amp_vs_fp32_bare"] = m.ratio("frogs", "bare")
        figures["amp_native_bf16"] = native
        figures["amp_auto"] = native
        rows.append(
            Row(
                f"e2e retrain, bf16 autocast ({'native' if native else 'emulated'} bf16; "
                f"amp=auto: {'on' if native else 'off'})",
                "images/s",
                m.median("frogs"),
                m.median("bare"),
                vs_bare=m.ratio("frogs", "bare"),
            )
        )
    if "job" in only:
        from benchmarks.trial import run_job_overhead

        seconds = run_job_overhead(sizes.job_repeats, cache_dir, warm="transfer" not in only)
        figures["job_overhead_s"] = statistics.median(seconds)
        rows.append(Row("job start to first trial", "s", statistics.median(seconds)))
    if "analysis" in only:
        from benchmarks.analysis_load import run_analysis

        result = run_analysis(sizes.analysis_records, max(1, sizes.repeats - 2))
        figures.update(result)
        if "analysis_s" in result:
            if sizes.analysis_records == 100_000:
                figures["analysis_100k_s"] = result["analysis_s"]
            rows.append(
                Row(
                    f"analysis, load+aggregate {sizes.analysis_records:,}",
                    "s",
                    result["analysis_s"],
                )
            )
        else:
            rows.append(Row(f"analysis: {result['analysis_error']}", "", float("nan")))
    return figures, rows


def _fmt(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if ratio else f"{value:,.3g}" if value < 100 else f"{value:,.0f}"


def format_table(rows: list[Row]) -> str:
    """A Markdown table: throughputs of each contender and frogs' ratios over them."""
    header = ["benchmark", "unit", "frogs", "bare / baseline", "ART", "frogs ÷ bare", "frogs ÷ ART"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r.name, r.unit, _fmt(r.frogs), _fmt(r.bare), _fmt(r.peer)]
        cells += [_fmt(r.vs_bare, True), _fmt(r.vs_peer, True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_machine(info: dict[str, object]) -> str:
    return (
        f"machine: {info['cpu']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), GPU: {info['gpu'] or 'none'}, "
        f"python {info['python']}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[2]
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (about two minutes)")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma list of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--repeats", type=int, help="timed rounds per benchmark (median)")
    parser.add_argument(
        "--cache-dir", help="frogs cache for the Fashion-MNIST job (default: frogs' own default)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        print(
            f"benchmarks: error: --only {','.join(unknown)} is not allowed; expected "
            f"{', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("art", "frogs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.perf_counter()
    with logging_redirect_tqdm():
        figures, rows = run_all(only, sizes, args.cache_dir)
    figures["quick"] = args.quick
    figures["wall_s"] = time.perf_counter() - started
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    print(f"\n{command}  ({figures['wall_s']:.0f} s)\n{format_machine(figures['machine'])}\n")
    print(format_table(rows))
    if args.out:
        atomic_write(args.out, json.dumps(figures, indent=1, default=str) + "\n")
        log.info("wrote %s", args.out)
    return 0
