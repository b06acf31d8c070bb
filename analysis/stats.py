"""Success rates with Wilson confidence intervals, and columns derived from the records."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from analysis.load import LEGACY_COLUMNS, NO_DEFENSE
from frogs.measures.intervals import wilson_interval
from frogs.store.records import PARAMETER_COLUMNS

logger = logging.getLogger(__name__)

#: The record's top-level parameter columns, in the order they are shown and grouped (frogs
#: writes them and names them once: ``frogs.store.records.PARAMETER_COLUMNS``);
#: ``parameter_columns`` puts the settings columns (``SETTINGS_PREFIXES``) after
#: ``target_selection``.
PARAM_COLUMNS = PARAMETER_COLUMNS
#: Settings columns are named ``<group>.<field>`` after frogs' settings dataclasses: every field
#: of the chosen attack, victim and defense (docs/records.md). Each one present is a parameter.
SETTINGS_PREFIXES = ("attack.", "victim.", "defense.")
#: Settings columns that repeat a top-level parameter (the resolved budget) and are not grouped by.
REPEATED_SETTINGS = ("attack.constraint", "attack.eps")
_SETTINGS_AFTER = PARAM_COLUMNS.index("target_selection") + 1
#: Provenance columns reported as distinct values.
PROVENANCE_COLUMNS = (
    "frogs_version",
    "git_sha",
    "torch_version",
    "device",
    "host",
    "clean_model_source",
    "clean_model_sha256",
)
#: Columns of a success table besides the group columns.
RATE_COLUMNS = ("n", "successes", "rate", "ci_low", "ci_high")
#: One aggregated column of a success table: (table column, record field, aggregation over the
#: group's ok trials, nulls skipped).
Summary = tuple[str, str, str]
#: Perceptibility beside every success rate: (table column, record field, aggregation over
#: the group's ok trials, nulls skipped). The field is each trial's worst poison measured
#: against the base image it is labelled as (smallest PSNR / SSIM, largest L-inf distance).
PERCEPTIBILITY_SUMMARY: tuple[Summary, ...] = (
    ("psnr_median", "poison_psnr_base_worst", "median"),
    ("linf255_max", "poison_linf255_base_worst", "max"),
    ("ssim_median", "poison_ssim_base_worst", "median"),
)
#: What the defense did, beside the success rate of the defenses table: the mean share of the
#: poisons it removed (over the trials that record one, counted in ``recall_n``) and the mean
#: number of clean training points it removed with them.
DEFENSE_SUMMARY: tuple[Summary, ...] = (
    ("recall_mean", "poison_recall", "mean"),
    ("recall_n", "poison_recall", "count"),
    ("clean_removed_mean", "clean_removed", "mean"),
)
#: The columns whose combinations the defenses table compares.
DEFENSE_KEYS = ("attack", "defense")
#: Table column counting the trials whose clean-retrained control (no poisons) already
#: labels the target as the base class, and the record field it counts.
CONTROL_SUMMARY = ("control_successes", "control_success")
#: Every column a success table may hold besides the group columns, in table order.
SUMMARY_COLUMNS = (
    *RATE_COLUMNS,
    *(name for name, _, _ in DEFENSE_SUMMARY),
    *(name for name, _, _ in PERCEPTIBILITY_SUMMARY),
    CONTROL_SUMMARY[0],
)
#: How the float columns of a success table are shown (CLI and report).
DISPLAY_FORMATS = {
    "rate": "{:.3f}",
    "ci_low": "{:.3f}",
    "ci_high": "{:.3f}",
    "recall_mean": "{:.3f}",
    "clean_removed_mean": "{:.1f}",
    "psnr_median": "{:.2f}",
    "linf255_max": "{:.2f}",
    "ssim_median": "{:.4f}",
}
#: Ablation arms (Fig. 11) in display order.
ARMS = ("full", "single base", "no optimization", "no watermark")


class UnknownColumnError(ValueError):
    """A requested column is not in the records; the message lists the available ones."""


def ok_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that count toward rates: ``status == ok`` with a known ``success``."""
    if "status" not in frame or "success" not in frame:
        return frame.iloc[0:0]
    ok = frame[(frame["status"] == "ok").to_numpy()]
    known = ok["success"].notna().to_numpy()
    if not known.all():
        logger.warning("%d ok record(s) have no success value; not counted", (~known).sum())
    return ok[known]


def parameter_columns(columns: Iterable[str]) -> list[str]:
    """The swept-parameter columns among ``columns``, in display order: those of
    ``PARAM_COLUMNS`` with every settings column (``attack.*``, then ``victim.*``, then
    ``defense.*``, each in the order given; ``REPEATED_SETTINGS`` left out) after
    ``target_selection``."""
    names = [str(c) for c in columns]
    present = set(names)
    settings = [
        name
        for prefix in SETTINGS_PREFIXES
        for name in names
        if name.startswith(prefix) and name not in REPEATED_SETTINGS
    ]
    head, tail = PARAM_COLUMNS[:_SETTINGS_AFTER], PARAM_COLUMNS[_SETTINGS_AFTER:]
    return [*(c for c in head if c in present), *settings, *(c for c in tail if c in present)]


def varying_parameters(frame: pd.DataFrame) -> list[str]:
    """Parameter columns (``parameter_columns``) that take more than one value in ``frame``.

    A settings column ``<group>.<field>`` counts only when it varies among the records of one
    ``<group>`` (the same attack, victim or defense): the fields of different attacks differ
    (feature collision's ``attack.opacity`` is null for the polytope attacks) without being
    swept, and ``attack`` already tells them apart.
    """
    out = []
    for column in parameter_columns(frame.columns):
        group = column.split(".", 1)[0] if column.startswith(SETTINGS_PREFIXES) else None
        keys = [group] if group is not None and group in frame else []
        if _varies(frame, column, keys):
            out.append(column)
    return out


def varying_within(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Parameter columns besides ``keys`` that take more than one value among the rows of some
    combination of ``keys``: a setting that only follows the attack (``attack.opacity`` of
    feature collision, null for the polytope attacks) does not count, one swept for every
    attack (``attack.num_poisons=1,10``) does."""
    return [
        column
        for column in parameter_columns(frame.columns)
        if column not in keys and _varies(frame, column, keys)
    ]


def _varies(frame: pd.DataFrame, column: str, keys: Sequence[str]) -> bool:
    """Whether ``column`` takes more than one value (null counting as one, lists compared as
    tuples) among the rows of some combination of ``keys`` (of all rows without keys)."""
    values = _hashable(frame[column])
    if not keys:
        return values.nunique(dropna=False) > 1
    groups = [_hashable(frame[k]) for k in keys]
    counts = values.groupby(groups, dropna=False).nunique(dropna=False)
    return bool(len(counts) and counts.max() > 1)


def check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``UnknownColumnError`` naming the missing columns (with the schema-3 name of a
    schema-2 one) and the available ones."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        renamed = [f"{c} is now {LEGACY_COLUMNS[c]}" for c in missing if c in LEGACY_COLUMNS]
        hint = f" ({'; '.join(renamed)})" if renamed else ""
        raise UnknownColumnError(
            f"unknown column(s) {', '.join(missing)}{hint}; available: "
            f"{', '.join(sorted(map(str, frame.columns)))}"
        )


def success_table(
    frame: pd.DataFrame,
    by: str | Sequence[str] | None = None,
    extra: Sequence[Summary] = (),
) -> pd.DataFrame:
    """Success rate per group of ``by`` columns with n, a Wilson 95 % interval and the
    perceptibility of the group's poisons.

    ``by`` defaults to the parameter columns that vary across the ok records. Only
    ``status == ok`` trials count. Returns the group columns, ``RATE_COLUMNS``, then those
    of ``extra`` (e.g. ``DEFENSE_SUMMARY``), ``PERCEPTIBILITY_SUMMARY`` and
    ``control_successes`` whose record fields exist (records without them, e.g. schema 1,
    get none of these columns).
    """
    by = [by] if isinstance(by, str) else list(by) if by is not None else None
    if by is not None:
        check_columns(frame, by)
    ok = ok_trials(frame)
    if by is None:
        by = varying_parameters(ok)
    summaries = (*extra, *PERCEPTIBILITY_SUMMARY)
    values = _summary_values(ok, summaries)
    aggregations = {"n": ("success", "size"), "successes": ("success", "sum")}
    aggregations.update({name: (name, how) for name, _, how in summaries})
    aggregations[CONTROL_SUMMARY[0]] = (CONTROL_SUMMARY[0], "sum")
    aggregations = {k: v for k, v in aggregations.items() if v[0] in values}
    if by:
        keys = [_hashable(ok[c]) for c in by]
        table = values.groupby(keys, dropna=False, sort=True).agg(**aggregations).reset_index()
        table.columns = [*by, *aggregations]
    else:
        table = pd.DataFrame(
            {name: [values[column].agg(how)] for name, (column, how) in aggregations.items()}
        )
    table["n"] = table["n"].astype(int)
    table["successes"] = table["successes"].astype(int)
    table["rate"] = table["successes"] / table["n"].where(table["n"] > 0)
    low, high = wilson_interval(table["successes"].to_numpy(), table["n"].to_numpy())
    table["ci_low"] = low
    table["ci_high"] = high
    counts = [CONTROL_SUMMARY[0], *(name for name, _, how in extra if how == "count")]
    for column in counts:
        if column in table:
            table[column] = table[column].astype(int)
    order = [*RATE_COLUMNS, *(name for name, _, _ in summaries), CONTROL_SUMMARY[0]]
    return table[[*by, *(c for c in order if c in table)]]


def _summary_values(ok: pd.DataFrame, summaries: Sequence[Summary]) -> pd.DataFrame:
    """The per-trial values a success table aggregates: ``success``, the fields of
    ``summaries`` (float, null as NaN) and whether the control succeeded, where the records
    hold them."""
    values = pd.DataFrame({"success": ok["success"].astype(bool).to_numpy()}, index=ok.index)
    for name, field, _ in summaries:
        if field in ok:
            values[name] = pd.to_numeric(ok[field], errors="coerce").astype(float)
    name, field = CONTROL_SUMMARY
    if field in ok:
        values[name] = ok[field].astype("boolean").fillna(False).astype(bool).to_numpy()
    return values


def format_values(table: pd.DataFrame, na: str = "nan") -> pd.DataFrame:
    """A copy of a success table with its float columns as text (``DISPLAY_FORMATS``)."""
    shown = table.copy()
    for column, pattern in DISPLAY_FORMATS.items():
        if column in shown:
            text = shown[column].map(lambda v, p=pattern: na if pd.isna(v) else p.format(v))
            shown[column] = text
    return shown


def compares_defenses(frame: pd.DataFrame) -> bool:
    """Whether the ok records hold more than one attack or more than one defense."""
    ok = ok_trials(frame)
    return any(key in ok and ok[key].nunique() > 1 for key in DEFENSE_KEYS)


def defense_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The attacks against the defenses: a success table with one row per (attack, defense),
    split further by every parameter that varies within such a combination
    (``varying_within``), with ``DEFENSE_SUMMARY`` beside the rate; an attack's undefended row
    (defense ``none``) first, then its defenses by name. Raises ``UnknownColumnError`` without
    the ``attack`` and ``defense`` columns."""
    check_columns(frame, DEFENSE_KEYS)
    ok = ok_trials(frame)
    by = [*DEFENSE_KEYS, *varying_within(ok, DEFENSE_KEYS)]
    table = success_table(ok, by=by, extra=DEFENSE_SUMMARY)
    attack, _ = pd.factorize(_hashable(table["attack"]), sort=True)
    defended = table["defense"].astype(object).ne(NO_DEFENSE).to_numpy()
    order = np.argsort(2 * attack + defended, kind="stable")
    return table.iloc[order].reset_index(drop=True)


def _hashable(values: pd.Series) -> pd.Series:
    """``values`` with lists turned into tuples so that they can be group keys."""
    if values.dtype == object and values.map(lambda v: isinstance(v, list)).any():
        return values.map(lambda v: tuple(v) if isinstance(v, list) else v)
    return values


def class_pair(frame: pd.DataFrame) -> pd.Series:
    """``"target→base"`` class-pair labels (e.g. ``bird→dog``)."""
    return frame["target_class"].astype(str) + "→" + frame["base_class"].astype(str)


def ablation_arm(frame: pd.DataFrame) -> pd.Series:
    """The ablation arm of each row (Fig. 11): full, single base, no optimization, no watermark.

    An arm is named by what is switched off (``attack.multi_base`` false, ``attack.optimize``
    false, ``attack.opacity`` 0); rows with several switched off are named by joining them
    with " + ".
    """
    single = ~frame["attack.multi_base"].astype(bool).to_numpy()
    no_opt = ~frame["attack.optimize"].astype(bool).to_numpy()
    no_wm = frame["attack.opacity"].astype(float).fillna(0.0).to_numpy() == 0.0
    names = np.full(len(frame), "", dtype=object)
    for mask, name in ((single, ARMS[1]), (no_opt, ARMS[2]), (no_wm, ARMS[3])):
        names = np.where(mask, np.where(names == "", name, names + " + " + name), names)
    names = np.where(names == "", ARMS[0], names)
    return pd.Series(names, index=frame.index, name="arm", dtype=object)


def mean_interval(values: pd.Series, z: float = 1.96) -> tuple[float, float, float]:
    """Mean and normal-approximation ``z`` interval (mean ± z·SEM) of ``values``."""
    data = values.dropna().to_numpy(dtype=float)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(data.mean())
    sem = float(data.std(ddof=1) / np.sqrt(data.size)) if data.size > 1 else 0.0
    return mean, mean - z * sem, mean + z * sem
