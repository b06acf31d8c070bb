"""One self-contained HTML page: counts, success table, the attacks against the defenses,
figures, configuration, provenance; and the defenses table as Markdown.

Images are embedded as base64 PNG so that the page can be mailed or attached as one file.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.figures import FigureSet
from analysis.load import LoadResult
from analysis.outputs import atomic_write_text
from analysis.stats import (
    CONTROL_SUMMARY,
    PERCEPTIBILITY_SUMMARY,
    PROVENANCE_COLUMNS,
    SUMMARY_COLUMNS,
    compares_defenses,
    defense_table,
    format_values,
    parameter_columns,
)

logger = logging.getLogger(__name__)

MAX_VALUES = 20
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
.muted { color: #777; }
"""


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → ``{"a.b": "value"}`` with values as compact JSON text."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def _hydra_configs(job_dirs: Iterable[str]) -> list[dict[str, str]]:
    """The flattened ``.hydra/config.yaml`` of every job directory that has one."""
    paths = [Path(d, ".hydra", "config.yaml") for d in job_dirs]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return []
    try:
        import yaml
    except ImportError:
        logger.info("PyYAML is not installed: showing parameter columns, not .hydra configs")
        return []
    configs = []
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            continue
        if isinstance(loaded, Mapping):
            configs.append(_flatten(loaded))
    return configs


def _text(value: Any) -> str:
    """A value as short text; missing values as ``null``."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return "null"
    return str(value)


def _distinct(values: pd.Series) -> tuple[str, int]:
    """The distinct values of ``values`` as text (at most ``MAX_VALUES`` shown) and their count."""
    try:
        uniques = pd.unique(values)
    except TypeError:  # unhashable values (lists, e.g. attack.ensemble)
        uniques = values.map(lambda v: str(v) if isinstance(v, list) else v).unique()
    shown = sorted({_text(v) for v in uniques})
    text = ", ".join(shown[:MAX_VALUES]) + (" …" if len(shown) > MAX_VALUES else "")
    return text, len(shown)


def sweep_configuration(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The sweep's settings (key, distinct values, their number; swept keys first) and
    where they come from: ``.hydra/config.yaml`` in the job directories when present,
    else the parameter columns of the records."""
    job_dirs = frame["job_dir"].unique() if "job_dir" in frame else []
    configs = _hydra_configs(job_dirs)
    if configs:
        table = pd.DataFrame(configs)
        source = f".hydra/config.yaml of {len(configs)} job(s)"
    else:
        table = frame[parameter_columns(frame.columns)]
        source = "record parameter columns"
    rows = [(key, *_distinct(table[key])) for key in table.columns]
    out = pd.DataFrame(rows, columns=["key", "values", "distinct"])
    return out.sort_values(["distinct", "key"], ascending=[False, True], kind="stable"), source


def provenance(frame: pd.DataFrame) -> pd.DataFrame:
    """Distinct values (with trial counts) of the provenance columns."""
    rows = []
    for column in PROVENANCE_COLUMNS:
        if column in frame:
            counts = frame[column].value_counts(dropna=False)
            text = ", ".join(
                f"{_text(value)} ({n})" for value, n in counts.head(MAX_VALUES).items()
            )
            rows.append((column, text + (" …" if len(counts) > MAX_VALUES else "")))
    return pd.DataFrame(rows, columns=["field", "values (trials)"])


def _table_html(table: pd.DataFrame) -> str:
    """``table`` as HTML with its float columns formatted as in the CLI."""
    return format_values(table, na="").to_html(index=False, border=0, escape=True, na_rep="")


def _summary_note(table: pd.DataFrame) -> str:
    """What the perceptibility and control columns of ``table`` mean ("" without them)."""
    notes = []
    if any(name in table for name, _, _ in PERCEPTIBILITY_SUMMARY):
        notes.append(
            "<code>psnr_median</code>, <code>ssim_median</code> and <code>linf255_max</code> "
            "describe the worst (most visible) poison of each trial measured against the base "
            "image it is labelled as: the median across the group's trials of its PSNR (dB; "
            "trials whose poisons equal their bases, with infinite PSNR, are left out) and "
            "SSIM, and the largest across trials of its L∞ distance in /255 pixel units."
        )
    if CONTROL_SUMMARY[0] in table:
        notes.append(
            "<code>control_successes</code> counts the trials whose control (the same "
            "retraining without poisons) already labels the target as the base class."
        )
    return f"<p>{' '.join(notes)}</p>" if notes else ""


#: What the defenses table's columns mean (HTML report and Markdown file).
DEFENSES_NOTE = (
    "One row per attack and defense (and per value of any parameter that varies within such a "
    "pair). n counts the ok trials; a success means that the victim retrained on the defended "
    "(filtered) training set labels the target as the base class; the rate's interval is the "
    "Wilson 95 % interval. Poison recall is the share of the poisons the defense removed, "
    "averaged over the trials that record it (their number in brackets); clean removed is the "
    "mean number of clean training points it removed with them. PSNR and L-inf describe the "
    "worst (most visible) poison of each trial against its base: the median of its PSNR (dB) "
    "and the largest L-inf distance (/255) across trials. Control successes count the trials "
    "whose control (the same retraining without poisons) already labels the target as the base."
)


def _defenses_html(frame: pd.DataFrame) -> list[str]:
    """The defenses section of the report (nothing unless the records compare several
    attacks or defenses)."""
    if not compares_defenses(frame):
        return []
    return [
        "<h2>Attacks against defenses</h2>",
        f"<p>{html.escape(DEFENSES_NOTE)}</p>",
        _table_html(defense_table(frame)),
    ]


def _cell(value: Any, pattern: str = "{:.1f}") -> str:
    """A number of the Markdown table (``n/a`` when missing)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "n/a"
    return pattern.format(value)


def defense_markdown(table: pd.DataFrame) -> list[str]:
    """The lines of ``analysis.stats.defense_table`` as a Markdown table: group columns, n,
    successes, rate (Wilson 95 % CI), mean poison recall (n), mean clean points removed,
    median PSNR of the worst poison, max L-inf /255, control successes."""
    group = [c for c in table.columns if c not in SUMMARY_COLUMNS]
    header = [
        *group,
        "n",
        "successes",
        "success rate (95 % CI)",
        "poison recall (n)",
        "clean removed",
        "median PSNR dB",
        "max L-inf /255",
        "control successes",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.to_dict("records"):
        rate = (
            f"{100 * row['rate']:.0f} % ({100 * row['ci_low']:.0f}-{100 * row['ci_high']:.0f})"
            if row["n"]
            else "n/a"
        )
        recall = row.get("recall_mean")
        cells = [
            *(_text(row[c]) for c in group),
            str(row["n"]),
            str(row["successes"]),
            rate,
            f"{_cell(recall, '{:.2f}')} ({row.get('recall_n', 0)})",
            _cell(row.get("clean_removed_mean")),
            _cell(row.get("psnr_median")),
            _cell(row.get("linf255_max")),
            _cell(row.get(CONTROL_SUMMARY[0]), "{:d}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_defenses(table: pd.DataFrame, path: str | Path, command: str) -> Path:
    """Write a defenses table (``analysis.stats.defense_table``) as Markdown to ``path``
    atomically: a line saying how it was made, the table and what its columns mean."""
    text = "\n".join(
        [
            f"Generated by `{command}` from {int(table['n'].sum())} ok trial records.",
            "",
            *defense_markdown(table),
            "",
            DEFENSES_NOTE,
            "",
        ]
    )
    return atomic_write_text(Path(path), text)


def _image_html(path: Path) -> str:
    """An ``<img>`` with the PNG at ``path`` embedded as base64."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_report(result: LoadResult, table: pd.DataFrame, figures: FigureSet | None = None) -> str:
    """The report page as an HTML string."""
    esc = html.escape
    group_columns = [c for c in table.columns if c not in SUMMARY_COLUMNS]
    counts = pd.DataFrame(
        [
            ("files", len(result.files)),
            ("records read", result.n_read),
            ("trials", result.n_trials),
            ("ok", result.n_ok),
            ("failed", result.n_failed),
            ("duplicates dropped", result.n_duplicates),
            ("malformed lines skipped", result.n_malformed),
        ],
        columns=["", "count"],
    )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>frogs analysis report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>frogs analysis report</h1>",
        f'<p class="muted">Generated {esc(now)} from {len(result.files)} results file(s).</p>',
        "<h2>Trials</h2>",
        counts.to_html(index=False, border=0),
        "<h2>Success rates</h2>",
        "<p>Only <code>status == ok</code> trials count; 95 % Wilson intervals. Grouped by "
        f"{esc(', '.join(group_columns)) or 'nothing (all trials)'}.</p>",
        _summary_note(table),
        _table_html(table) if len(table) else "<p>No ok trials.</p>",
        *_defenses_html(result.frame),
        "<h2>Figures</h2>",
    ]
    if figures is not None:
        for name, paths in figures.written.items():
            pngs = [p for p in paths if p.suffix == ".png"]
            if pngs:
                parts += [f"<h3>{esc(name)}</h3>", _image_html(pngs[0])]
        if figures.skipped:
            parts.append("<p>Skipped:</p><ul>")
            parts += [
                f"<li><code>{esc(n)}</code>: {esc(why)}</li>" for n, why in figures.skipped.items()
            ]
            parts.append("</ul>")
    else:
        parts.append("<p>Figures were not drawn.</p>")
    config, source = sweep_configuration(result.frame)
    parts += [
        "<h2>Configuration</h2>",
        f'<p class="muted">From {esc(source)}; swept keys first.</p>',
        config.to_html(index=False, border=0),
        "<h2>Provenance</h2>",
        provenance(result.frame).to_html(index=False, border=0),
        "<h2>Inputs</h2><ul>",
        *[f"<li><code>{esc(str(p))}</code></li>" for p in result.files[:MAX_VALUES]],
        f"<li>… and {len(result.files) - MAX_VALUES} more</li>"
        if len(result.files) > MAX_VALUES
        else "",
        "</ul></body></html>",
    ]
    return "\n".join(parts)


def write_report(
    result: LoadResult,
    table: pd.DataFrame,
    out_dir: str | Path,
    figures: FigureSet | None = None,
) -> Path:
    """Write ``out_dir/report.html`` atomically and return its path."""
    path = atomic_write_text(Path(out_dir) / "report.html", render_report(result, table, figures))
    logger.info("wrote %s", path)
    return path
