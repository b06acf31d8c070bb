"""The figures drawn from the trial records alone (paper Figs. 1b, 2, 5, 11, and success
against the perceptibility budget), and all of them.

Each ``plot_*`` function takes the loaded frame and an output directory, writes
``fig_<name>.png`` and ``.pdf`` there, and returns their paths, or logs what the records
lack and returns None. Only ``status == ok`` trials are plotted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from analysis.load import NO_DEFENSE
from analysis.outputs import save_figure
from analysis.plotting import (
    FigureDataError,
    draw,
    figure,
    need,
    palette_for,
    rate_bars,
    series_label,
    subplots,
)
from analysis.stats import (
    ARMS,
    DEFENSE_KEYS,
    ablation_arm,
    class_pair,
    compares_defenses,
    ok_trials,
    success_table,
)
from analysis.tensor_figures import plot_feature_space, plot_poison_grid

logger = logging.getLogger(__name__)

#: Columns that may split the poison-count curves into separate lines, in label order.
SERIES_COLUMNS = ("scenario", "attack", "defense", "pair", "target_selection", "attack.opacity")
#: Columns that may split the success-vs-budget curves: a radius means something else per norm.
BUDGET_SERIES_COLUMNS = ("constraint", "attack", "defense", "attack.recipe", "scenario")
#: The per-trial PSNR whose distribution fig_perceptibility shows: worst poison vs its base.
PSNR_COLUMN = "poison_psnr_base_worst"


def _with_pair(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus a ``pair`` column (target→base) when the class columns exist."""
    if {"target_class", "base_class"} <= set(frame.columns):
        return frame.assign(pair=class_pair(frame))
    return frame


@figure("fig_poison_count")
def plot_poison_count(
    frame: pd.DataFrame, out_dir: Path, series: Sequence[str] | None = None
) -> list[Path] | None:
    """Success rate vs number of poisons with Wilson CI bands (paper Fig. 5b).

    One line per value of ``series`` (default: those of scenario, attack, defense, class
    pair, target selection and opacity that vary).
    """
    ok = _with_pair(ok_trials(frame))
    need(ok, ["attack.num_poisons", "success"])
    counts = ok["attack.num_poisons"].dropna().unique()
    if len(counts) < 2:
        raise FigureDataError(
            f"needs more than one distinct attack.num_poisons (found {list(counts)})"
        )
    if series is None:
        series = [c for c in SERIES_COLUMNS if c in ok and ok[c].nunique(dropna=False) > 1]
    table = success_table(ok, by=[*series, "attack.num_poisons"])
    table["series"] = series_label(table, series)
    colours = palette_for(list(pd.unique(table["series"])))
    fig, (ax,) = subplots(1, width=6.0)
    sns.lineplot(
        data=table, x="attack.num_poisons", y="rate", hue="series", palette=colours,
        marker="o", errorbar=None, ax=ax, legend=len(colours) > 1,
    )  # fmt: skip
    for label, part in table.groupby("series", sort=False):
        part = part.sort_values("attack.num_poisons")
        ax.fill_between(
            part["attack.num_poisons"], part["ci_low"], part["ci_high"],
            color=colours[label], alpha=0.2,
        )  # fmt: skip
    if ax.get_legend() is not None:
        ax.get_legend().set_title(None)
    ax.set(xlabel="number of poisons", ylabel="attack success rate", ylim=(0, 1.02))
    ax.set_title("Success vs number of poisons (95 % Wilson CI)")
    return save_figure(fig, out_dir, "fig_poison_count")


@figure("fig_perceptibility")
def plot_perceptibility(frame: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Success rate vs the budget radius ``eps_255`` with Wilson CI bands, and the
    distribution of each trial's worst-poison PSNR against its base.

    One line per value of constraint / attack / defense / recipe / scenario that varies.
    Needs more than one distinct (non-null) ``eps_255``; trials without a radius are left out
    of the curves.
    """
    ok = ok_trials(frame)
    need(ok, ["eps_255", "success"])
    radius = pd.to_numeric(ok["eps_255"], errors="coerce")
    radii = np.sort(radius.dropna().unique())
    if len(radii) < 2:
        found = ", ".join(f"{v:g}" for v in radii)
        raise FigureDataError(f"needs more than one distinct eps_255 (found: {found})")
    data = ok.assign(eps_255=radius)[radius.notna().to_numpy()]
    if len(data) < len(ok):
        logger.info("fig_perceptibility: %d trial(s) without eps_255 left out", len(ok) - len(data))
    series = [c for c in BUDGET_SERIES_COLUMNS if c in data and data[c].nunique(dropna=False) > 1]
    table = success_table(data, by=[*series, "eps_255"])
    table["series"] = series_label(table, series)
    colours = palette_for(list(pd.unique(table["series"])))
    has_psnr = PSNR_COLUMN in data and data[PSNR_COLUMN].notna().any()
    fig, axes = subplots(2 if has_psnr else 1, width=5.5)
    ax = axes[0]
    for label, part in table.groupby("series", sort=False):
        part = part.sort_values("eps_255")
        ax.plot(part["eps_255"], part["rate"], marker="o", color=colours[label], label=label)
        ax.fill_between(
            part["eps_255"], part["ci_low"], part["ci_high"], color=colours[label], alpha=0.2
        )
    if len(colours) > 1:
        ax.legend()
    if radii.min() > 0 and radii.max() / radii.min() >= 10:
        ax.set_xscale("log")
    if len(radii) <= 8:
        ax.set_xticks(radii, [f"{v:g}" for v in radii])
        ax.minorticks_off()
    ax.set(
        xlabel="budget radius eps (/255 pixel units)",
        ylabel="attack success rate",
        ylim=(0, 1.02),
        title="Success vs budget (95 % Wilson CI)",
    )
    if has_psnr:
        _psnr_boxes(axes[1], data, series, colours)
    else:
        logger.info("fig_perceptibility: records lack %s; drawing success only", PSNR_COLUMN)
    return save_figure(fig, out_dir, "fig_perceptibility")


def _psnr_boxes(ax: Axes, data: pd.DataFrame, series: list[str], colours: dict) -> None:
    """Box plots of each trial's worst-poison PSNR per budget radius (and series).

    Drawn with matplotlib's ``boxplot`` (seaborn's passes an argument Matplotlib 3.11
    deprecates); nulls are infinite PSNRs (poisons equal to their bases) and are counted.
    """
    values = pd.to_numeric(data[PSNR_COLUMN], errors="coerce")
    infinite = int(values.isna().sum())
    shown = data.assign(psnr=values, series=series_label(data, series)).dropna(subset=["psnr"])
    radii = np.sort(shown["eps_255"].unique())
    labels = [label for label in colours if label in set(shown["series"])]
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        part = shown[shown["series"] == label]
        groups = [
            (i, part.loc[part["eps_255"] == r, "psnr"].to_numpy()) for i, r in enumerate(radii)
        ]
        groups = [(i, g) for i, g in groups if len(g)]
        boxes = ax.boxplot(
            [g for _, g in groups], positions=[i - 0.4 + width * (j + 0.5) for i, _ in groups],
            widths=0.9 * width, patch_artist=True, manage_ticks=False,
            medianprops={"color": "black"}, flierprops={"markersize": 2},
        )  # fmt: skip
        for patch in boxes["boxes"]:
            patch.set_facecolor(colours[label])
        if series:
            boxes["boxes"][0].set_label(label)
    ax.set_xticks(np.arange(len(radii)), [f"{v:g}" for v in radii])
    if series:
        ax.legend()
    note = f"\n{infinite} trial(s) with infinite PSNR not shown" if infinite else ""
    ax.set(
        xlabel="budget radius eps (/255 pixel units)",
        ylabel="PSNR of the worst poison vs its base (dB)",
        title="Poison perceptibility (higher: less visible)" + note,
    )


@figure("fig_outliers")
def plot_outliers(frame: pd.DataFrame, out_dir: Path, max_targets: int = 1000) -> list[Path] | None:
    """Targets' clean confidence as bars coloured by success; outlier vs random (Fig. 5a).

    Beyond ``max_targets`` targets the bars show evenly spaced ranks of the sorted targets.
    """
    ok = ok_trials(frame)
    need(ok, ["target_true_prob_clean", "success"])
    data = ok[ok["target_true_prob_clean"].notna()].sort_values("target_true_prob_clean")
    shown = data
    if len(data) > max_targets:
        shown = data.iloc[np.linspace(0, len(data) - 1, max_targets).round().astype(int)]
    by_selection = "target_selection" in data and data["target_selection"].notna().any()
    fig, axes = subplots(2 if by_selection else 1, width=5.5)
    colours = {True: sns.color_palette("colorblind")[2], False: sns.color_palette("colorblind")[3]}
    success = shown["success"].astype(bool).to_numpy()
    axes[0].bar(
        np.arange(len(shown)), shown["target_true_prob_clean"], width=1.0,
        color=[colours[s] for s in success], linewidth=0,
    )  # fmt: skip
    handles = [
        axes[0].bar([0], [0], color=colours[flag], label=label)
        for flag, label in ((True, "success"), (False, "failure"))
    ]
    axes[0].legend(handles=handles)
    sampled = f", {len(shown)} of {len(data)} shown" if len(shown) < len(data) else ""
    axes[0].set(
        xlabel=f"target (sorted by clean confidence{sampled})",
        ylabel="clean-model probability of the true class",
        ylim=(0, 1.02),
        title="Targets' clean confidence",
    )
    if by_selection:
        table = success_table(data, by=["target_selection"])
        rate_bars(axes[1], table, "target_selection")
        axes[1].set(xlabel="target selection", title="Outlier vs random targets")
    else:
        logger.info("fig_outliers: records lack target_selection; drawing the bars only")
    return save_figure(fig, out_dir, "fig_outliers")


@figure("fig_ablation")
def plot_ablation(frame: pd.DataFrame, out_dir: Path, hue: str | None = None) -> list[Path] | None:
    """Success per ablation arm: full, single base, no optimization, no watermark (Fig. 11).

    Only the records whose attack has the three switches (feature collision) are counted.
    """
    switches = ["attack.multi_base", "attack.optimize", "attack.opacity"]
    ok = ok_trials(frame)
    need(ok, [*switches, "success"])
    ok = ok.dropna(subset=switches)
    data = ok.assign(arm=ablation_arm(ok))
    arms = list(pd.unique(data["arm"]))
    if len(arms) < 2:
        raise FigureDataError(f"needs at least two ablation arms (found only: {', '.join(arms)})")
    order = [a for a in ARMS if a in arms] + sorted(a for a in arms if a not in ARMS)
    table = success_table(data, by=["arm", hue] if hue else ["arm"])
    fig, (ax,) = subplots(1, width=1.4 * len(order) + 2.0)
    rate_bars(ax, table, "arm", hue=hue, order=order)
    ax.set(xlabel="", title="Ablation (95 % Wilson CI)")
    return save_figure(fig, out_dir, "fig_ablation")


@figure("fig_transfer")
def plot_transfer(frame: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Transfer learning: the target's base-class probability under the clean and the
    poisoned model (Fig. 1b) and the decision-boundary angular deviation (Fig. 2a)."""
    ok = ok_trials(frame)
    need(ok, ["scenario"])
    data = ok[ok["scenario"] == "transfer"]
    need(data, [], what="transfer (scenario == transfer) records")
    probs = ["target_base_prob_clean", "target_base_prob"]
    has_probs = all(c in data and data[c].notna().any() for c in probs)
    has_angle = "angular_deviation_deg" in data and data["angular_deviation_deg"].notna().any()
    if not (has_probs or has_angle):
        raise FigureDataError(
            "transfer records lack target_base_prob_clean/target_base_prob and "
            "angular_deviation_deg"
        )
    fig, axes = subplots(int(has_probs) + int(has_angle))
    if has_probs:
        long = pd.concat(
            [
                pd.DataFrame({"model": "clean", "probability": data[probs[0]]}),
                pd.DataFrame({"model": "poisoned", "probability": data[probs[1]]}),
            ],
            ignore_index=True,
        ).dropna()
        sns.histplot(
            data=long, x="probability", hue="model", bins=20, binrange=(0, 1),
            palette="colorblind", element="step", ax=axes[0],
        )  # fmt: skip
        axes[0].set(
            xlabel="target's base-class (wrong-class) probability",
            title="Transfer learning: target misclassification",
        )
    else:
        logger.info("fig_transfer: records lack %s; drawing the angular deviation only", probs)
    if has_angle:
        ax = axes[-1]
        sns.histplot(data=data, x="angular_deviation_deg", bins=20, ax=ax, color="C0")
        ax.set(xlabel="decision-boundary angular deviation (degrees)", title="Boundary rotation")
    else:
        logger.info("fig_transfer: records lack angular_deviation_deg; drawing probabilities only")
    return save_figure(fig, out_dir, "fig_transfer")


@figure("fig_clean_accuracy")
def plot_clean_accuracy(frame: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Clean test accuracy before vs after poisoning: the attack must go unnoticed."""
    ok = ok_trials(frame)
    need(ok, ["clean_acc_before", "clean_acc_after"])
    data = ok.dropna(subset=["clean_acc_before", "clean_acc_after"])
    data = data.assign(change=100.0 * (data["clean_acc_after"] - data["clean_acc_before"]))
    hue = "scenario" if "scenario" in data and data["scenario"].notna().any() else None
    fig, (left, right) = subplots(2)
    sns.scatterplot(
        data=data, x="clean_acc_before", y="clean_acc_after", hue=hue,
        palette="colorblind" if hue else None, s=15, alpha=0.6, ax=left, rasterized=True,
    )  # fmt: skip
    low = float(min(data["clean_acc_before"].min(), data["clean_acc_after"].min()))
    high = float(max(data["clean_acc_before"].max(), data["clean_acc_after"].max()))
    left.plot([low, high], [low, high], ls="--", color="grey", lw=1)
    left.set(xlabel="clean accuracy before", ylabel="clean accuracy after", title="Clean accuracy")
    sns.histplot(
        data=data, x="change", hue=hue, palette="colorblind" if hue else None,
        bins=30, element="step", ax=right,
    )  # fmt: skip
    right.axvline(0.0, ls="--", color="grey", lw=1)
    right.set(xlabel="accuracy change (percentage points)", title="After − before")
    return save_figure(fig, out_dir, "fig_clean_accuracy")


@figure("fig_angular_per_epoch")
def plot_angular_per_epoch(frame: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Angular deviation per retraining epoch, mean ± 95 % CI, transfer vs end-to-end (Fig. 2b)."""
    ok = ok_trials(frame)
    column = "angular_deviation_per_epoch"
    need(ok, [column])
    hue = "scenario" if "scenario" in ok else None
    data = ok[[column] + ([hue] if hue else [])]
    long = data.explode(column).dropna(subset=[column])
    if long.empty:
        raise FigureDataError(f"ok records have only empty {column} lists")
    long["epoch"] = long.groupby(level=0).cumcount() + 1
    long["angle"] = long[column].astype(float)
    keys = [hue, "epoch"] if hue else ["epoch"]
    stats = long.groupby(keys, dropna=False)["angle"].agg(["mean", "std", "count"]).reset_index()
    half = 1.96 * stats["std"].fillna(0.0) / np.sqrt(stats["count"])
    stats["low"], stats["high"] = stats["mean"] - half, stats["mean"] + half
    stats["series"] = stats[hue].astype(str) if hue else "all"
    colours = palette_for(list(pd.unique(stats["series"])))
    fig, (ax,) = subplots(1, width=6.0)
    for label, part in stats.groupby("series", sort=False):
        ax.plot(part["epoch"], part["mean"], marker="o", color=colours[label], label=label)
        ax.fill_between(part["epoch"], part["low"], part["high"], color=colours[label], alpha=0.2)
    if len(colours) > 1:
        ax.legend(title="scenario")
    ax.set(
        xlabel="retraining epoch",
        ylabel="angular deviation (degrees)",
        title="Decision-boundary rotation during retraining (mean, 95 % CI)",
    )
    return save_figure(fig, out_dir, "fig_angular_per_epoch")


@figure("fig_defenses")
def plot_defenses(frame: pd.DataFrame, out_dir: Path) -> list[Path] | None:
    """Success rate with Wilson 95 % error bars per defense, one bar per attack, beside the
    mean poison recall (the share of the poisons the defense removed; 95 % bootstrap
    interval) per defense and attack. Defense ``none`` comes first.

    Needs more than one attack or more than one defense among the ok records; the recall
    panel is left out when the records lack ``poison_recall``.
    """
    ok = ok_trials(frame)
    need(ok, [*DEFENSE_KEYS, "success"])
    if not compares_defenses(ok):
        found = ", ".join(f"{key} {ok[key].dropna().iloc[0]}" for key in DEFENSE_KEYS)
        raise FigureDataError(f"needs more than one attack or defense (found only: {found})")
    table = success_table(ok, by=list(DEFENSE_KEYS))
    attacks = list(pd.unique(table["attack"]))
    names = sorted(map(str, pd.unique(table["defense"])))
    defenses = [d for d in names if d == NO_DEFENSE] + [d for d in names if d != NO_DEFENSE]
    recall = pd.to_numeric(ok["poison_recall"], errors="coerce") if "poison_recall" in ok else None
    has_recall = recall is not None and bool(recall.notna().any())
    fig, axes = subplots(2 if has_recall else 1, width=max(5.0, 1.2 * len(defenses) + 1.5))
    rate_bars(axes[0], table, "defense", hue="attack", order=defenses)
    axes[0].set(xlabel="defense", title="Success against each defense (95 % Wilson CI)")
    handles, labels = axes[0].get_legend_handles_labels()
    if has_recall:
        data = ok.assign(poison_recall=recall).dropna(subset=["poison_recall"])
        sns.barplot(
            data=data, x="defense", y="poison_recall", hue="attack", order=defenses,
            hue_order=attacks, palette=palette_for(attacks), saturation=1.0,
            errorbar=("ci", 95), seed=0, capsize=0.1, legend=False, ax=axes[1],
        )  # fmt: skip
        axes[1].set(
            xlabel="defense",
            ylabel="poison recall (share of poisons removed)",
            ylim=(0, 1.05),
            title="Poisons removed by the defense (95 % bootstrap CI)",
        )
    else:
        logger.info("fig_defenses: records lack poison_recall; drawing success only")
    for ax in axes:  # "activation_clustering" on two lines
        ax.set_xticks(np.arange(len(defenses)), [d.replace("_", "\n") for d in defenses])
    axes[0].get_legend().remove()  # one legend for both panels, outside them
    axes[-1].legend(handles, labels, title="attack", loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(fig, out_dir, "fig_defenses")


#: Every figure in paper-study order, then the attacks against the defenses.
FIGURES = (
    plot_poison_count,
    plot_perceptibility,
    plot_outliers,
    plot_ablation,
    plot_transfer,
    plot_clean_accuracy,
    plot_poison_grid,
    plot_feature_space,
    plot_angular_per_epoch,
    plot_defenses,
)


@dataclass(frozen=True)
class FigureSet:
    """What ``make_figures`` wrote (name → paths) and skipped (name → reason)."""

    written: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def make_figures(frame: pd.DataFrame, out_dir: str | Path) -> FigureSet:
    """Draw every figure the records allow into ``out_dir``; log and list the skipped ones."""
    result = FigureSet()
    for plot in FIGURES:
        name = plot.figure_name  # type: ignore[attr-defined]
        paths, reason = draw(plot.__wrapped__, name, frame, out_dir)  # type: ignore[attr-defined]
        if paths is None:
            result.skipped[name] = reason or "skipped"
        else:
            result.written[name] = paths
    return result
