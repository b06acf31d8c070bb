"""Success rates with Wilson confidence intervals, and columns derived from the records."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Swept parameter columns of a record (schema 2), in the order they are shown and grouped.
#: The budget radius is grouped by ``eps_255`` (the same radius as ``eps``, in /255 units);
#: ``stop_distance`` is the job's resolved threshold, not a setting, so it is not one of them.
PARAM_COLUMNS = (
    "scenario",
    "dataset",
    "model",
    "attack",
    "recipe",
    "target_class",
    "base_class",
    "target_selection",
    "num_poisons",
    "opacity",
    "beta0",
    "iters",
    "step",
    "lr",
    "stop_distance_setting",
    "constraint",
    "eps_255",
    "quantize",
    "multi_base",
    "optimize",
    "lr_decay",
    "retrain_epochs",
    "retrain_lr",
    "pretrain_epochs",
    "pretrain_schedule",
    "pretrain_classes",
)
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
#: Perceptibility beside every success rate: (table column, record field, aggregation over
#: the group's ok trials, nulls skipped). The field is each trial's worst poison measured
#: against the base image it is labelled as (smallest PSNR / SSIM, largest L-inf distance).
PERCEPTIBILITY_SUMMARY = (
    ("psnr_median", "poison_psnr_base_worst", "median"),
    ("linf255_max", "poison_linf255_base_worst", "max"),
    ("ssim_median", "poison_ssim_base_worst", "median"),
)
#: Table column counting the trials whose clean-retrained control (no poisons) already
#: labels the target as the base class, and the record field it counts.
CONTROL_SUMMARY = ("control_successes", "control_success")
#: Every column a success table may hold besides the group columns, in table order.
SUMMARY_COLUMNS = (
    *RATE_COLUMNS,
    *(name for name, _, _ in PERCEPTIBILITY_SUMMARY),
    CONTROL_SUMMARY[0],
)
#: How the float columns of a success table are shown (CLI and report).
DISPLAY_FORMATS = {
    "rate": "{:.3f}",
    "ci_low": "{:.3f}",
    "ci_high": "{:.3f}",
    "psnr_median": "{:.2f}",
    "linf255_max": "{:.2f}",
    "ssim_median": "{:.4f}",
}
#: Ablation arms (Fig. 11) in display order.
ARMS = ("full", "single base", "no optimization", "no watermark")


class UnknownColumnError(ValueError):
    """A requested column is not in the records; the message lists the available ones."""


def wilson_interval(
    successes: float | np.ndarray, n: float | np.ndarray, z: float = 1.96
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Wilson score interval for a binomial proportion (scalars or arrays; NaN where n = 0).

    Preferred over the normal approximation because it stays inside [0, 1] and is
    sensible for the small n and extreme rates that per-configuration groups have.
    """
    k = np.asarray(successes, dtype=float)
    m = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / m
        z2 = z * z
        denom = 1.0 + z2 / m
        centre = (p + z2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def ok_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that count toward rates: ``status == ok`` with a known ``success``."""
    if "status" not in frame or "success" not in frame:
        return frame.iloc[0:0]
    ok = frame[(frame["status"] == "ok").to_numpy()]
    known = ok["success"].notna().to_numpy()
    if not known.all():
        logger.warning("%d ok record(s) have no success value; not counted", (~known).sum())
    return ok[known]


def varying_parameters(frame: pd.DataFrame) -> list[str]:
    """Parameter columns (``PARAM_COLUMNS``) that take more than one value in ``frame``."""
    out = []
    for column in PARAM_COLUMNS:
        if column in frame and _nunique(frame[column]) > 1:
            out.append(column)
    return out


def _nunique(values: pd.Series) -> int:
    """Distinct values counting null as one; list values compared as tuples."""
    try:
        return values.nunique(dropna=False)
    except TypeError:
        return values.map(lambda v: tuple(v) if isinstance(v, list) else v).nunique(dropna=False)


def check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``UnknownColumnError`` naming the missing columns and the available ones."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UnknownColumnError(
            f"unknown column(s) {', '.join(missing)}; available: "
            f"{', '.join(sorted(map(str, frame.columns)))}"
        )


def success_table(frame: pd.DataFrame, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Success rate per group of ``by`` columns with n, a Wilson 95 % interval and the
    perceptibility of the group's poisons.

    ``by`` defaults to the parameter columns that vary across the ok records. Only
    ``status == ok`` trials count. Returns the group columns, ``RATE_COLUMNS``, then those
    of ``PERCEPTIBILITY_SUMMARY`` and ``control_successes`` whose record fields exist
    (records without them, e.g. schema 1, get none of these columns).
    """
    by = [by] if isinstance(by, str) else list(by) if by is not None else None
    if by is not None:
        check_columns(frame, by)
    ok = ok_trials(frame)
    if by is None:
        by = varying_parameters(ok)
    values = _summary_values(ok)
    aggregations = {"n": ("success", "size"), "successes": ("success", "sum")}
    aggregations.update({name: (name, how) for name, _, how in PERCEPTIBILITY_SUMMARY})
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
    if CONTROL_SUMMARY[0] in table:
        table[CONTROL_SUMMARY[0]] = table[CONTROL_SUMMARY[0]].astype(int)
    return table[[*by, *(c for c in SUMMARY_COLUMNS if c in table)]]


def _summary_values(ok: pd.DataFrame) -> pd.DataFrame:
    """The per-trial values a success table aggregates: ``success``, the perceptibility
    fields (float, null as NaN) and whether the control succeeded, where the records hold them."""
    values = pd.DataFrame({"success": ok["success"].astype(bool).to_numpy()}, index=ok.index)
    for name, field, _ in PERCEPTIBILITY_SUMMARY:
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

    An arm is named by what is switched off (``multi_base`` false, ``optimize`` false,
    ``opacity`` 0); rows with several switched off are named by joining them with " + ".
    """
    single = ~frame["multi_base"].astype(bool).to_numpy()
    no_opt = ~frame["optimize"].astype(bool).to_numpy()
    no_wm = frame["opacity"].astype(float).fillna(0.0).to_numpy() == 0.0
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
