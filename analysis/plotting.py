"""Shared figure machinery: the skip mechanism, the style, and rate bars with CIs.

Figures are built on ``matplotlib.figure.Figure`` directly rather than pyplot: no global
figure state, nothing to close, and no backend switch that would disturb a notebook. The
seaborn style is applied as a context so that importing analysis changes no rcParams.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

PlotFunction = Callable[..., list[Path] | None]


class FigureDataError(Exception):
    """The records do not hold what a figure needs; the message says what is missing."""


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The seaborn look used by every figure, restored on exit."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.2):
        yield


def draw(
    fn: PlotFunction, name: str, frame: pd.DataFrame, out_dir: str | Path, **kwargs: Any
) -> tuple[list[Path] | None, str | None]:
    """Run one undecorated figure function: (written paths, None) or (None, why skipped)."""
    try:
        with style():
            return fn(frame, Path(out_dir), **kwargs), None
    except FigureDataError as exc:
        logger.info("skipping %s: %s", name, exc)
        return None, str(exc)


def figure(name: str) -> Callable[[PlotFunction], PlotFunction]:
    """Turn ``fn(frame, out_dir, **kw)`` into a figure that logs and returns None when skipped.

    The undecorated function stays reachable as ``__wrapped__`` (and the name as
    ``figure_name``) so that ``make_figures`` can collect the reasons for skipping.
    """

    def decorate(fn: PlotFunction) -> PlotFunction:
        @functools.wraps(fn)
        def wrapper(frame: pd.DataFrame, out_dir: str | Path, **kwargs: Any) -> list[Path] | None:
            return draw(fn, name, frame, out_dir, **kwargs)[0]

        wrapper.figure_name = name  # type: ignore[attr-defined]
        return wrapper

    return decorate


def need(frame: pd.DataFrame, columns: Sequence[str], what: str = "ok records") -> None:
    """Raise ``FigureDataError`` unless every column exists with a value in ``frame``."""
    if frame.empty:
        raise FigureDataError(f"no {what}")
    missing = [c for c in columns if c not in frame or not frame[c].notna().any()]
    if missing:
        raise FigureDataError(f"{what} lack {', '.join(missing)}")


def subplots(ncols: int, width: float = 5.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``ncols`` axes side by side."""
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def series_label(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One readable label per row from ``columns`` (``"bird→dog, opacity 0.3"``)."""
    if not columns:
        return pd.Series("all", index=frame.index, dtype=object)
    parts = []
    for column in columns:
        text = frame[column].astype(str)
        parts.append(text if column == "pair" else column.replace("_", " ") + " " + text)
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label.astype(object)


def palette_for(labels: Sequence[Any]) -> dict[Any, tuple[float, float, float]]:
    """A colour-blind-safe colour per label, stable in the order given."""
    colours = sns.color_palette("colorblind", max(len(labels), 1))
    return {label: colours[i % len(colours)] for i, label in enumerate(labels)}


def rate_bars(
    ax: Axes, table: pd.DataFrame, x: str, hue: str | None = None, order: Sequence[Any] = ()
) -> None:
    """Bars of ``rate`` per ``x`` (grouped by ``hue``) with Wilson CI error bars and n."""
    categories = list(order) or list(pd.unique(table[x]))
    hues = list(pd.unique(table[hue])) if hue else [None]
    colours = palette_for(hues)
    width = 0.8 / len(hues)
    for j, level in enumerate(hues):
        part = table if hue is None else table[table[hue] == level]
        part = part.set_index(x).reindex(categories)
        pos = np.arange(len(categories)) - 0.4 + width * (j + 0.5)
        rate = part["rate"].to_numpy(dtype=float)
        err = np.vstack([rate - part["ci_low"], part["ci_high"] - rate]).astype(float)
        ax.bar(pos, rate, width, yerr=err, capsize=3, color=colours[level], label=level)
        for p, r, n in zip(pos, rate, part["n"], strict=True):
            if not np.isnan(r):
                ax.annotate(f"n={int(n)}", (p, 0.02), ha="center", fontsize=8, rotation=90)
    ax.set_xticks(np.arange(len(categories)), [str(c) for c in categories])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("attack success rate")
    if hue:
        ax.legend(title=hue.replace("_", " "))
