"""The short table a job prints when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frogs.measures.intervals import wilson_interval

_COLUMNS = (
    ("target", "target_index", "{}"),
    ("base", "base_indices", "{}"),
    ("success", "success", "{}"),
    ("p(base)", "target_base_prob", "{:.3f}"),
    ("feat before", "feat_dist_before", "{:.2f}"),
    ("feat after", "feat_dist_after", "{:.2f}"),
    ("Linf/255", "poison_linf255_base_worst", "{:.1f}"),
    ("PSNR dB", "poison_psnr_base_worst", "{:.1f}"),
    ("SSIM", "poison_ssim_base_worst", "{:.3f}"),
)


def _cell(record: dict[str, Any], key: str, fmt: str) -> str:
    value = record.get(key)
    if value is None:
        return "-"
    if key == "base_indices":
        return str(value[0]) + (f" +{len(value) - 1}" if len(value) > 1 else "")
    return fmt.format(value)


def _budget(record: dict[str, Any]) -> str:
    """The trial's perceptibility budget in words (radius in /255 units)."""
    if record.get("eps_255") is None:
        return f"no hard {record.get('constraint')} radius"
    norm = "L-inf" if record.get("constraint") == "linf" else "L2"
    return f"{norm} <= {record['eps_255']:.3g}/255 of the crafting start"


def _perceptibility_line(ok: list[dict[str, Any]]) -> str:
    """The worst poison of the run against its base, so success is never read without it."""
    linf = max(r["poison_linf255_base_worst"] for r in ok)
    psnrs = [r["poison_psnr_base_worst"] for r in ok if r["poison_psnr_base_worst"] is not None]
    ssim = min(r["poison_ssim_base_worst"] for r in ok)
    psnr = f"{min(psnrs):.1f} dB" if psnrs else "inf (unchanged)"
    return f"worst poison vs its base: L-inf {linf:.1f}/255, PSNR {psnr}, SSIM {ssim:.3f}"


def _pairs(records: list[dict[str, Any]]) -> str:
    """The attacked pair, or the pairs when a setups file gives each trial its own."""
    pairs = list(dict.fromkeys(f"{r['target_class']!s}->{r['base_class']!s}" for r in records))
    return pairs[0] if len(pairs) == 1 else f"{len(pairs)} pairs ({', '.join(pairs)})"


def _interval(hits: int, n: int) -> str:
    """The success rate's 95 % Wilson interval, in percent (nothing without trials)."""
    if not n:
        return ""
    low, high = wilson_interval(hits, n)
    return f" (95 % Wilson {100 * low:.0f}-{100 * high:.0f} %)"


def summary_table(records: list[dict[str, Any]], output_dir: Path) -> str:
    """Trials of this run as aligned text, with the success rate and where outputs went."""
    lines = []
    if records:
        rows = [[title for title, _, _ in _COLUMNS]]
        for record in records:
            if record["status"] == "ok":
                rows.append([_cell(record, key, fmt) for _, key, fmt in _COLUMNS])
            else:
                rows.append(
                    [str(record.get("target_index")), "-", "FAILED"] + ["-"] * (len(_COLUMNS) - 3)
                )
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        ok = [r for r in records if r["status"] == "ok"]
        hits = sum(bool(r["success"]) for r in ok)
        first = records[0]
        lines.append(
            f"{first['scenario']} {first['dataset']} {_pairs(records)}: success {hits}/{len(ok)}"
            + _interval(hits, len(ok))
            + (f" ({len(records) - len(ok)} failed)" if len(ok) < len(records) else "")
            + f" within {_budget(first)}"
        )
        if ok:
            controls = sum(bool(r.get("control_success")) for r in ok)
            lines.append(
                f"control (the same retraining without poisons): {controls}/{len(ok)} targets "
                "classified as the base class"
            )
        if ok:
            lines.append(_perceptibility_line(ok))
    else:
        lines.append("no new trials (all already recorded)")
    lines.append(f"records: {output_dir / 'results.jsonl'}")
    pictures = (
        sorted((output_dir / "poisons").glob("*.png")) if (output_dir / "poisons").is_dir() else []
    )
    if pictures:
        lines.append(f"target/base/poison pictures: {output_dir / 'poisons'} ({len(pictures)} PNG)")
    return "\n".join(lines)
