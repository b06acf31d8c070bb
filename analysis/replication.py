"""The replication report: every claim of the paper (``analysis.claims``) beside frogs' number.

``frogs-analyze DIR... --replication docs/replication.md`` loads the records, measures each claim
(n, Wilson 95 % interval, the poisons' perceptibility, wall time), checks it against the paper's
number with a stated rule, measures the scale reductions on paired targets, draws the figures
into ``img/`` beside the report and writes the Markdown file atomically. A claim without records
is listed as not run here, with its command and a GPU estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.claims import (
    ASSUMED_GPU_SPEEDUP,
    CLAIMS,
    E2E_REDUCTIONS,
    FIGURE_ANGLES,
    FIGURE_BUDGET,
    FIGURE_E2E,
    FIGURE_OVERLAP,
    FIGURE_POISONS,
    GPU_BASIS,
    PAPER_E2E_TRAIN_SIZE,
    Claim,
    Reduction,
    Verdict,
    comparison_runs,
)
from analysis.outputs import atomic_write_text, save_figure
from analysis.plotting import palette_for, style, subplots
from analysis.stats import (
    ablation_arm,
    mean_interval,
    ok_trials,
    success_table,
    wilson_interval,
)

__all__ = [
    "FIGURE_ANGLES",
    "FIGURE_BUDGET",
    "FIGURE_E2E",
    "FIGURE_OVERLAP",
    "FIGURE_POISONS",
    "ClaimResult",
    "measure_claims",
    "render",
    "write_replication",
]

#: The goal of claim 2: the smallest L-inf budget with at least this one-shot success rate.
GOAL_RATE = 0.9
GOAL_MAX_EPS_255 = 8.0
#: App. C's budget (L-inf, /255), where claim 2's paper number is stated.
APP_C_EPS_255 = 2.0
#: The headline budget when no claim sets one: the paper's usual L-inf 8/255.
DEFAULT_HEADLINE_EPS_255 = 8.0
_TIME_COLUMNS = ("craft_s", "retrain_s", "eval_s")


@dataclass(frozen=True)
class Rate:
    """Successes out of n with a Wilson 95 % interval."""

    successes: int
    n: int

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)  # type: ignore[return-value]

    def text(self) -> str:
        low, high = self.interval
        return (
            f"{100 * self.rate:.0f} % ({self.successes}/{self.n}; 95 % CI "
            f"{100 * low:.0f}-{100 * high:.0f} %)"
        )


@dataclass
class ClaimResult:
    """What the report says about one claim: its number, the verdict (a ``Verdict`` and the
    reason in words), the records it rests on and the paper-scale estimate."""

    claim: Claim
    records: pd.DataFrame
    number: str = "not run here"
    rate: Rate | None = None
    psnr_median: float | None = None
    linf255_max: float | None = None
    verdict: Verdict = Verdict.NOT_RUN
    reason: str = ""
    #: the verdict the records gave before the claim's minimum n was checked
    measured: Verdict = Verdict.NOT_RUN
    arms: pd.DataFrame | None = None
    details: list[str] = field(default_factory=list)
    reductions: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    #: CPU seconds per paper-scale trial behind the GPU estimate (None: nothing to scale from)
    paper_trial_s: float | None = None

    @property
    def figure(self) -> str:
        return self.claim.figure

    @property
    def verdict_text(self) -> str:
        """The verdict as the report prints it: its opening words, then the reason."""
        return f"{self.verdict.value}: {self.reason}" if self.reason else self.verdict.value

    def conclude(self, verdict: Verdict, reason: str = "") -> None:
        self.verdict = self.measured = verdict
        self.reason = reason


def budget_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Each record's budget as ``budget`` (the label: ``linf 8/255``, ``l2 1.74 (8/255 per
    pixel)``, ``l2 unbounded``), ``budget_norm`` and ``budget_radius_255`` (the L-inf radius, or
    an L2 radius's per-pixel equivalent, in /255; from the record's ``image_values`` for L2, NaN
    when unknown or unbounded)."""

    def one(row: pd.Series) -> tuple[str, str, float]:
        norm = row.get("constraint")
        if norm == "linf":
            radius = float(row["eps_255"])
            return f"linf {radius:g}/255", "linf", radius
        eps = pd.to_numeric(row.get("eps"), errors="coerce")
        if pd.isna(eps):
            return "l2 unbounded", "l2", math.nan
        values = pd.to_numeric(row.get("image_values"), errors="coerce")
        if pd.isna(values):
            return f"l2 {float(eps):.3g}", "l2", math.nan
        per_pixel = float(eps) / math.sqrt(float(values)) * 255
        return f"l2 {float(eps):.3g} ({per_pixel:.0f}/255 per pixel)", "l2", per_pixel

    names = ["budget", "budget_norm", "budget_radius_255"]
    if not len(frame):
        return pd.DataFrame(columns=names, index=frame.index)
    return pd.DataFrame(frame.apply(one, axis=1).tolist(), columns=names, index=frame.index)


def _budget_sort(arms: pd.DataFrame) -> pd.DataFrame:
    """Arms in ladder order: L-inf budgets first, then L2, each by radius (unbounded last)."""
    key = pd.DataFrame(
        {"norm": arms["budget_norm"].ne("linf"), "radius": arms["budget_radius_255"].fillna(np.inf)}
    )
    order = key.sort_values(["norm", "radius"], kind="stable").index
    return arms.loc[order].reset_index(drop=True)


def opacity_percent(frame: pd.DataFrame) -> pd.Series:
    """Each record's watermark opacity in whole percent; attacks without a watermark (the
    polytopes) have no opacity: 0 %."""
    opacity = 100 * pd.to_numeric(frame["attack.opacity"], errors="coerce").fillna(0.0)
    return opacity.round().astype(int)


def arm_label(frame: pd.DataFrame) -> pd.Series:
    """The arm of an end-to-end record: ablation arm, or poisons and opacity."""
    if frame.empty:
        return pd.Series(dtype=object)
    arms = ablation_arm(frame)
    counts = frame["attack.num_poisons"].astype(int).astype(str)
    plain = counts + " poisons, " + opacity_percent(frame).astype(str) + " %"
    return arms.where(arms != "full", plain)


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the budget columns (``budget_columns``) and the ``arm`` column the claims
    group by."""
    out = frame.copy()
    out[["budget", "budget_norm", "budget_radius_255"]] = budget_columns(out)
    needed = ("attack.num_poisons", "attack.opacity", "attack.multi_base", "attack.optimize")
    out["arm"] = arm_label(out) if all(c in out for c in needed) else None
    return out


def _intervals_overlap(a: pd.Series, b: pd.Series) -> bool:
    """Whether two arms' Wilson intervals (``ci_low``, ``ci_high``) overlap."""
    return bool(a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"])


def rate_of(rows: pd.DataFrame) -> Rate:
    return Rate(int(rows["success"].astype(bool).sum()), len(rows))


def _median(rows: pd.DataFrame, column: str) -> float | None:
    if column not in rows:
        return None
    values = pd.to_numeric(rows[column], errors="coerce").dropna()
    return float(values.median()) if len(values) else None


def _max(rows: pd.DataFrame, column: str) -> float | None:
    if column not in rows:
        return None
    values = pd.to_numeric(rows[column], errors="coerce").dropna()
    return float(values.max()) if len(values) else None


def arm_table(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """``analysis.stats.success_table`` per arm (n, successes, rate, Wilson interval, the worst
    poison's median PSNR and max L-inf/255, the control's successes) plus the mean clean-accuracy
    drop and the wall time of each arm; budgets in ladder order."""
    table = success_table(rows, by=by)
    extras = {
        arm: (_accuracy_drop(part), wall_seconds(part) / 60) for arm, part in rows.groupby(by)
    }
    table["acc_drop_pt"] = table[by].map(lambda arm: extras[arm][0])
    table["wall_min"] = table[by].map(lambda arm: extras[arm][1])
    if "poisons_overlap_fraction" in rows:  # end-to-end records: each arm's own overlap
        overlap = {
            arm: (
                _median(part, "feat_dist_after"),
                pd.to_numeric(part["poisons_overlap_fraction"], errors="coerce").mean(),
            )
            for arm, part in rows.groupby(by)
        }
        table["feat_dist_median"] = table[by].map(lambda arm: overlap[arm][0])
        table["overlap_pct"] = table[by].map(lambda arm: 100 * overlap[arm][1])
    if by == "budget" and len(table):
        first = rows.groupby("budget")[["budget_norm", "budget_radius_255"]].first()
        table = _budget_sort(table.join(first, on="budget"))
    return table


def _accuracy_drop(rows: pd.DataFrame) -> float | None:
    if "clean_acc_before" not in rows or "clean_acc_after" not in rows:
        return None
    drop = pd.to_numeric(rows["clean_acc_before"]) - pd.to_numeric(rows["clean_acc_after"])
    return float(100 * drop.mean()) if len(drop) else None


def wall_seconds(rows: pd.DataFrame) -> float:
    """Summed wall time of the trials' stages (crafting, retraining, evaluation); a trial whose
    poisons were reused (crafted by another trial and cached) adds no crafting time."""
    present = [c for c in _TIME_COLUMNS if c in rows]
    times = rows[present].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    if "craft_s" in times and "poisons_reused" in rows:
        reused = rows["poisons_reused"].astype(object).eq(True).to_numpy()
        times.loc[reused, "craft_s"] = 0.0
    return float(times.to_numpy().sum())


def reported_budget(arms: pd.DataFrame) -> str | None:
    """The smallest L-inf budget at which the one-shot rate reaches ``GOAL_RATE``."""
    reached = arms[arms["budget_norm"].eq("linf") & (arms["rate"] >= GOAL_RATE)]
    return None if reached.empty else str(reached.iloc[0]["budget"])


def _reproduced(claim: Claim) -> Verdict:
    return Verdict.REPRODUCED_REDUCED if claim.reduced else Verdict.REPRODUCED


def _rate_verdict(
    claim: Claim, rate: Rate, psnr: float | None, whose: str = "the paper's"
) -> tuple[Verdict, str]:
    """Reproduced when the paper's rate lies inside frogs' 95 % interval."""
    assert claim.paper_value is not None
    low, high = rate.interval
    paper = 100 * claim.paper_value
    if low <= claim.paper_value <= high:
        return _reproduced(claim), f"{whose} {paper:.0f} % lies in frogs' 95 % CI"
    side = "below" if rate.rate < claim.paper_value else "above"
    why = (
        f"{100 * rate.rate:.0f} % is {side} {whose} {paper:.0f} % "
        f"(95 % CI {100 * low:.0f}-{100 * high:.0f} %)"
    )
    if side == "above" and psnr is not None and psnr < 30:
        why += f"; poisons are visible (median PSNR {psnr:.1f} dB): a bug, not a result"
    return Verdict.NOT_REPRODUCED, why


def _headline_rows(rows: pd.DataFrame, budget: str | None) -> pd.DataFrame:
    """The rows at the reported budget, else at L-inf 8/255, else at the most-run budget."""
    if budget is not None and budget in set(rows["budget"]):
        return rows[rows["budget"] == budget]
    default = rows["budget_norm"].eq("linf") & rows["budget_radius_255"].eq(
        DEFAULT_HEADLINE_EPS_255
    )
    if default.any():
        return rows[default]
    counts = rows["budget"].value_counts()
    return rows[rows["budget"] == counts.index[0]]


def _success_claim(result: ClaimResult, budget: str | None) -> None:
    claim = result.claim
    rows = result.records
    if claim.arms:
        result.arms = arm_table(rows, claim.arms)
    if claim.arms == "budget":
        rows = _headline_rows(rows, budget)
        result.details.append(f"headline budget: {rows['budget'].iloc[0]}")
        if "target_class" in rows:
            for pair, part in rows.groupby(rows["target_class"] + " -> " + rows["base_class"]):
                result.details.append(f"{pair}: {rate_of(part).text()}")
        drop = _accuracy_drop(rows)
        if drop is not None:
            result.details.append(f"clean accuracy drop: {drop:.2f} pt (mean over trials)")
        acc = _median(rows, "clean_acc_before")
        if acc is not None:
            result.details.append(f"clean victim accuracy: {100 * acc:.1f} %")
        rank = _median(rows, "victim_feature_rank")
        size = _median(rows, "victim_train_size")
        if rank is not None and size is not None:
            result.details.append(
                f"head training samples {size:.0f} vs feature rank {rank:.0f} "
                f"(live units {_median(rows, 'victim_live_features'):.0f})"
            )
        result.details += _extractor_details(rows)
    result.rate = rate_of(rows)
    result.number = result.rate.text()
    result.psnr_median = _median(rows, "poison_psnr_base_worst")
    result.linf255_max = _max(rows, "poison_linf255_base_worst")
    result.conclude(*_rate_verdict(claim, result.rate, result.psnr_median))
    controls = rows.get("control_success")
    if controls is not None:
        result.details.append(
            f"control (same run without poisons) labels the target as base in "
            f"{int(controls.fillna(False).astype(bool).sum())}/{len(rows)} trials"
        )


def _extractor_details(rows: pd.DataFrame) -> list[str]:
    """A transfer claim's extractor and how far its poisons got, from the records."""
    details = []
    train, test = _median(rows, "clean_train_acc"), _median(rows, "clean_test_acc")
    if test is not None:
        details.append(
            f"extractor (from the records): {_fmt(None if train is None else 100 * train)} % "
            f"train, {100 * test:.1f} % test accuracy on the classes it learnt"
        )
    before, after = _median(rows, "feat_dist_before"), _median(rows, "feat_dist_after")
    if before is not None and after is not None:
        details.append(
            f"median poison-target feature distance: {_fmt(before)} at the start -> "
            f"{_fmt(after)} crafted"
        )
    return details


def _curve_claim(result: ClaimResult) -> None:
    result.arms = arm_table(result.records, "budget")
    arms = result.arms
    reached = reported_budget(arms)
    two = arms[arms["budget_norm"].eq("linf") & arms["budget_radius_255"].eq(APP_C_EPS_255)]
    if reached is not None:
        eps = float(arms.loc[arms["budget"] == reached, "budget_radius_255"].iloc[0])
        goal = "met" if eps <= GOAL_MAX_EPS_255 else "not met"
        result.number = f"smallest L-inf budget with >= {100 * GOAL_RATE:.0f} %: {reached}"
        result.details.append(f"goal (>= 90 % at <= 8/255): {goal}")
    else:
        best = arms.sort_values("rate").iloc[-1]
        result.number = (
            f"no budget reaches {100 * GOAL_RATE:.0f} %; best {100 * best['rate']:.0f} % at "
            f"{best['budget']}"
        )
        result.details.append("goal (>= 90 % at <= 8/255): not met")
    if len(two):
        rate = Rate(int(two.iloc[0]["successes"]), int(two.iloc[0]["n"]))
        result.rate = rate
        verdict, why = _rate_verdict(
            result.claim, rate, two.iloc[0]["psnr_median"], whose="App. C's"
        )
        result.conclude(verdict, f"{why} (at {APP_C_EPS_255:g}/255)")
        result.psnr_median = two.iloc[0]["psnr_median"]
        result.linf255_max = two.iloc[0]["linf255_max"]
    else:
        result.conclude(Verdict.NOT_RUN, f"no records at L-inf {APP_C_EPS_255:g}/255")


def angle_groups(
    rows: pd.DataFrame, budget: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Claim 3's records split: crafted transfer poisons at the headline budget, the transfer
    noise floor (clean bases, no crafting) and the end-to-end trials."""
    transfer = rows[rows["scenario"] == "transfer"]
    crafted = transfer[transfer["attack.optimize"].astype(bool)]
    if len(crafted):
        crafted = _headline_rows(crafted, budget)
    floor = transfer[~transfer["attack.optimize"].astype(bool)]
    return crafted, floor, rows[rows["scenario"] == "end_to_end"]


def _angle_claim(result: ClaimResult, budget: str | None) -> None:
    crafted, floor, e2e = angle_groups(result.records, budget)
    parts = []
    if len(crafted):
        mean, low, high = mean_interval(crafted["angular_deviation_deg"].astype(float))
        parts.append(f"transfer {mean:.2f} deg (95 % CI {low:.2f}-{high:.2f}, n={len(crafted)})")
        first = _first_epoch_share(crafted)
        if first is not None:
            result.details.append(
                f"transfer: {100 * first:.0f} % of the final angle is reached after epoch 1"
            )
        result.psnr_median = _median(crafted, "poison_psnr_base_worst")
        result.linf255_max = _max(crafted, "poison_linf255_base_worst")
    if len(floor):
        mean, low, high = mean_interval(floor["angular_deviation_deg"].astype(float))
        result.details.append(
            f"transfer noise floor (one clean base image added, no crafting): {mean:.2f} deg "
            f"(95 % CI {low:.2f}-{high:.2f}, n={len(floor)})"
        )
    if len(e2e):
        mean, low, high = mean_interval(e2e["angular_deviation_deg"].astype(float))
        drift = _median(e2e, "control_drift_deg")
        parts.append(f"end-to-end {mean:.2f} deg (n={len(e2e)})")
        result.details.append(
            f"end-to-end: {mean:.2f} deg against the clean-retrain control (95 % CI "
            f"{low:.2f}-{high:.2f}); the control itself moved {drift:.2f} deg from the clean model"
        )
    result.number = "; ".join(parts) if parts else "not run here"
    paper_deg = result.claim.paper_value
    assert paper_deg is not None
    checks: list[tuple[bool, str]] = []  # (reproduced, what)
    if len(crafted):
        mean = float(crafted["angular_deviation_deg"].astype(float).mean())
        ratio = mean / paper_deg
        same_order = 0.5 <= ratio <= 2
        checks.append(
            (
                same_order,
                f"transfer {mean:.1f} deg = {ratio:.2f} x the paper's {paper_deg:g} deg: "
                + ("same order (within 2x)" if same_order else "not within 2x"),
            )
        )
        if len(floor):
            floor_mean = float(floor["angular_deviation_deg"].astype(float).mean())
            above = floor_mean < mean
            checks.append(
                (
                    above,
                    f"{floor_mean:.1f} deg of it is the noise floor"
                    if above
                    else "not above the noise floor",
                )
            )
        first = _first_epoch_share(crafted)
        if first is not None:
            checks.append(
                (
                    first >= 0.5,
                    "mostly in the first epoch"
                    + ("" if first >= 0.5 else f": no ({100 * first:.0f} % of it)"),
                )
            )
    if len(e2e):
        mean = float(e2e["angular_deviation_deg"].astype(float).mean())
        checks.append(
            (
                mean < 1,
                "end-to-end fractions of a degree" + ("" if mean < 1 else f": no ({mean:.2f} deg)"),
            )
        )
    if checks:
        failed = [what for ok, what in checks if not ok]
        verdict = Verdict.NOT_REPRODUCED if failed else _reproduced(result.claim)
        result.conclude(verdict, "; ".join(what for _, what in checks))


def _first_epoch_share(rows: pd.DataFrame) -> float | None:
    if "angular_deviation_per_epoch" not in rows:
        return None
    shares = []
    for angles in rows["angular_deviation_per_epoch"]:
        if isinstance(angles, list | np.ndarray) and len(angles) and angles[-1]:
            shares.append(float(angles[0]) / float(angles[-1]))
    return float(np.median(shares)) if shares else None


def _outlier_claim(result: ClaimResult) -> None:
    result.arms = arm_table(result.records, "target_selection")
    by = {row["target_selection"]: row for _, row in result.arms.iterrows()}
    if {"outlier", "random"} <= set(by):
        out, rnd = by["outlier"], by["random"]
        result.number = (
            f"outliers {Rate(int(out['successes']), int(out['n'])).text()} vs random "
            f"{Rate(int(rnd['successes']), int(rnd['n'])).text()}"
        )
        overlap = _intervals_overlap(out, rnd)
        direction = out["rate"] > rnd["rate"]
        result.conclude(
            _reproduced(result.claim) if direction else Verdict.NOT_REPRODUCED,
            ("outliers beat random targets" if direction else "outliers do not beat random targets")
            + ("; the intervals overlap (not significant at this n)" if overlap else ""),
        )
    else:
        result.number = "one arm only"
        result.conclude(Verdict.NOT_RUN, "needs both outlier and random targets")
    result.psnr_median = _median(result.records, "poison_psnr_base_worst")
    result.linf255_max = _max(result.records, "poison_linf255_base_worst")


def _monotone_claim(result: ClaimResult) -> None:
    rows = result.records
    result.arms = arm_table(rows, "arm")
    if rows["attack.num_poisons"].nunique() < 2:
        result.number = f"one poison count only ({int(rows['attack.num_poisons'].iloc[0])})"
        result.conclude(Verdict.NOT_RUN, "needs at least two poison counts")
        return
    from scipy.stats import spearmanr

    per_trial = spearmanr(rows["attack.num_poisons"].astype(float), rows["success"].astype(float))
    result.number = (
        f"Spearman rho(#poisons, success) = {per_trial.statistic:.2f} over {len(rows)} trials"
    )
    rising = per_trial.statistic > 0
    reason = ("success rises with #poisons" if rising else "no rise with #poisons") + (
        f" (p = {per_trial.pvalue:.2g})"
    )
    higher, opacity_text, missing = _opacity_comparison(rows)
    if opacity_text:
        reason += f"; {opacity_text}"
    # the opacities are compared once every one has run every count; until then, the rise only
    judged = None if missing else higher
    result.conclude(
        _reproduced(result.claim) if rising and judged is not False else Verdict.NOT_REPRODUCED,
        reason,
    )
    if missing:
        as_measured = result.verdict_text
        result.verdict = Verdict.TOO_FEW
        result.reason = f"{missing}; as measured: {as_measured}"
    result.psnr_median = _median(rows, "poison_psnr_base_worst")
    result.linf255_max = _max(rows, "poison_linf255_base_worst")


def _opacity_comparison(rows: pd.DataFrame) -> tuple[bool | None, str, str]:
    """Fig. 5b's second finding, the higher opacity above the lower: (whether it is, over the
    (target, poison count) cells both opacities ran, so that each side attacks the same targets
    with the same counts; None when not measured), its text, and what is missing ("" when every
    opacity ran every count)."""
    opacity = opacity_percent(rows)
    if opacity.nunique() < 2:
        return None, "", ""
    counts = rows["attack.num_poisons"].astype(int)
    ran = {o: set(counts[opacity == o]) for o in sorted(opacity.unique())}
    every = set().union(*ran.values())
    missing = "; ".join(
        f"the {o} % opacity arm lacks {', '.join(map(str, sorted(every - c)))} poisons"
        for o, c in ran.items()
        if every - c
    )
    low, high = min(ran), max(ran)
    cells = pd.DataFrame(
        {
            "target": rows["target_index"].to_numpy(),
            "count": counts.to_numpy(),
            "opacity": opacity.to_numpy(),
            "success": rows["success"].astype(bool).to_numpy(),
        }
    )
    side = {o: cells[cells["opacity"] == o].drop(columns="opacity") for o in (low, high)}
    paired = side[high].merge(side[low], on=["target", "count"], suffixes=("_high", "_low"))
    if paired.empty:
        return None, f"{high} % and {low} % opacity share no target and poison count yet", missing
    rates = {
        high: Rate(int(paired["success_high"].sum()), len(paired)),
        low: Rate(int(paired["success_low"].sum()), len(paired)),
    }
    only_high = int((paired["success_high"] & ~paired["success_low"]).sum())
    only_low = int((paired["success_low"] & ~paired["success_high"]).sum())
    above = rates[high].rate > rates[low].rate
    common = sorted(paired["count"].unique())
    text = (
        f"{high} % opacity {'above' if above else 'not above'} {low} % on the same targets at "
        f"the counts both ran{' so far' if missing else ''} ({', '.join(map(str, common))}; "
        f"{len(paired)} target-count pairs): {rates[high].text()} vs {rates[low].text()}; "
        f"{only_high} killed at {high} % alone, {only_low} at {low} % alone"
    )
    return above, text, missing


def _ablation_claim(result: ClaimResult) -> None:
    rows = result.records.copy()
    rows["arm"] = ablation_arm(rows)
    result.arms = arm_table(rows, "arm")
    rates = dict(zip(result.arms["arm"], result.arms["rate"], strict=True))
    full = rates.get("full")
    if full is None or len(rates) < 2:
        result.number = "needs the full arm and at least one ablated arm"
        result.conclude(Verdict.NOT_RUN)
        return
    result.number = ", ".join(f"{arm} {100 * rate:.0f} %" for arm, rate in rates.items())
    beaten = [arm for arm, rate in rates.items() if arm != "full" and rate >= full]
    if full == 0:
        result.conclude(
            Verdict.NOT_REPRODUCED,
            "the full recipe succeeded on no target, so no ablated arm can fall below it",
        )
    elif beaten:
        verb = "matches or beats" if len(beaten) == 1 else "match or beat"
        result.conclude(Verdict.NOT_REPRODUCED, f"{', '.join(beaten)} {verb} the full recipe")
    else:
        table = result.arms.set_index("arm")
        overlapping = [
            arm
            for arm in rates
            if arm != "full" and _intervals_overlap(table.loc[arm], table.loc["full"])
        ]
        caveat = (
            f"; the intervals of {', '.join(overlapping)} overlap the full recipe's (not "
            "significant at this n)"
            if overlapping
            else ""
        )
        result.conclude(
            _reproduced(result.claim), f"the full recipe beats every ablated arm{caveat}"
        )
    killed = {
        arm: sorted(int(t) for t in part.loc[part["success"].astype(bool), "target_index"])
        for arm, part in rows.groupby("arm", sort=False)
    }
    result.details.append(
        "targets killed, by arm: "
        + "; ".join(
            f"{arm} {', '.join(map(str, killed[arm])) or 'none'}" for arm in result.arms["arm"]
        )
    )
    missing = [arm for arm in result.claim.expected_arms if arm not in rates]
    if missing:  # a verdict on some arms waits for the others
        result.reason = f"{', '.join(missing)} not run yet; as measured: {result.verdict_text}"
        result.verdict = Verdict.TOO_FEW
    result.psnr_median = _median(rows, "poison_psnr_base_worst")
    result.linf255_max = _max(rows, "poison_linf255_base_worst")


def _restrict_to_reduced(claim: Claim, rows: pd.DataFrame) -> pd.DataFrame:
    """The claim's own records: without the comparison runs of its reductions."""
    if not claim.reductions or rows.empty:
        return rows
    return rows[~comparison_runs(rows, claim.reductions).to_numpy()]


def paired_effect(claim: Claim, rows: pd.DataFrame, reduction: Reduction) -> str | None:
    """The effect of one reduction on the same targets: successes and distances, both ways."""
    if reduction.column not in rows:
        return None
    others = [r for r in claim.reductions if r is not reduction and r.column in rows]
    keep = pd.Series(True, index=rows.index)
    for other in others:
        keep &= rows[other.column] != other.full
    reduced = rows[keep & (rows[reduction.column] != reduction.full)]
    full = rows[keep & (rows[reduction.column] == reduction.full)]
    # the same target attacked the same way (a claim with several arms pairs each arm's own)
    key = ["target_index", "target_class", "base_class"] + (["arm"] if "arm" in rows else [])
    paired = reduced.merge(full, on=key, suffixes=("_reduced", "_full"))
    if paired.empty:
        return None
    s_red = int(paired["success_reduced"].astype(bool).sum())
    s_full = int(paired["success_full"].astype(bool).sum())
    agree = int(
        (paired["success_reduced"].astype(bool) == paired["success_full"].astype(bool)).sum()
    )
    as_run = ", ".join(map(str, sorted(pd.unique(paired[f"{reduction.column}_reduced"]))))
    text = (
        f"{reduction.what}: {as_run} (as run) vs {reduction.full} on the same "
        f"{len(paired)} targets: {s_red} vs {s_full} successes, {agree}/{len(paired)} agree"
    )
    for column, what in (
        ("feat_dist_after", "mean feature distance poison-target"),
        ("target_base_prob", "mean base-class probability of the target"),
    ):
        if f"{column}_reduced" in paired:
            a = pd.to_numeric(paired[f"{column}_reduced"]).mean()
            b = pd.to_numeric(paired[f"{column}_full"]).mean()
            text += f"; {what} {a:.3g} vs {b:.3g}"
    return text


def measure_claim(claim: Claim, frame: pd.DataFrame, budget: str | None) -> ClaimResult:
    """One claim's number, verdict and details from the labelled ok records."""
    selected = frame[claim.select(frame).to_numpy()] if len(frame) else frame
    rows = _restrict_to_reduced(claim, selected)
    result = ClaimResult(claim, rows)
    result.wall_s = wall_seconds(selected)
    for reduction in claim.reductions:
        effect = paired_effect(claim, selected, reduction)
        if effect is not None:
            result.reductions.append(effect)
    if rows.empty:
        return result
    if claim.metric == "success":
        _success_claim(result, budget)
    elif claim.metric == "curve":
        _curve_claim(result)
    elif claim.metric == "angle":
        _angle_claim(result, budget)
    elif claim.metric == "outliers":
        _outlier_claim(result)
    elif claim.metric == "monotone":
        _monotone_claim(result)
    elif claim.metric == "ablation":
        _ablation_claim(result)
    else:
        raise ValueError(f"claim {claim.key}: unknown metric {claim.metric!r}")
    if "scenario" in rows and rows["scenario"].eq("end_to_end").all():
        result.details += e2e_details(rows)
    _enough(result)
    if claim.expected_arms and result.arms is not None:
        missing = [arm for arm in claim.expected_arms if arm not in set(result.arms.iloc[:, 0])]
        if missing:
            result.details.append(f"arms not run here: {', '.join(missing)}")
    if claim.why_not and result.measured is Verdict.NOT_REPRODUCED:
        result.details.append(f"why not reproduced here: {claim.why_not}")
    return result


def _values(rows: pd.DataFrame, column: str) -> str:
    """The distinct values of ``column`` as run, for the report (``n/a`` when absent)."""
    if column not in rows:
        return "n/a"
    values = sorted(pd.unique(rows[column].dropna()), key=str)
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) or "n/a"


def e2e_details(rows: pd.DataFrame) -> list[str]:
    """What an end-to-end claim's records say beyond the rate: the scale as run, the clean
    model, how close the poisons came to the target against the data's own feature scale (the
    overlap criterion of ``frogs.measures.feature_scale``), what 8-bit poisons changed, and
    reuse."""
    details = [
        f"as run (from the records): recipe {_values(rows, 'attack.recipe')}, "
        f"{_values(rows, 'attack.iters')} crafting iterations, "
        f"{_values(rows, 'victim.epochs')} retraining epochs"
    ]
    train, test = _median(rows, "clean_train_acc"), _median(rows, "clean_test_acc")
    if test is not None:
        sha = _values(rows, "clean_model_sha256")[:12]
        details.append(
            f"clean model ({_values(rows, 'clean_model_source')}, sha256 {sha}...): "
            f"{_fmt(None if train is None else 100 * train)} % train, {100 * test:.1f} % test "
            "accuracy"
        )
    if {"feat_dist_after", "target_nn_train_dist", "poisons_overlap_fraction"} <= set(rows):
        overlap = pd.to_numeric(rows["poisons_overlap_fraction"], errors="coerce")
        details.append(
            "overlap (a poison closer to the target in the clean feature space than the "
            "target's nearest clean training image; criterion fixed in "
            "frogs/measures/feature_scale.py "
            "before the runs): median poison-target distance "
            f"{_fmt(_median(rows, 'feat_dist_before'))} at the start -> "
            f"{_fmt(_median(rows, 'feat_dist_after'))} crafted (closest poison "
            f"{_fmt(_median(rows, 'feat_dist_after_min'))}); the target's nearest clean training "
            f"image at {_fmt(_median(rows, 'target_nn_train_dist'))}; training images' "
            f"nearest-neighbour distance median {_fmt(_median(rows, 'train_nn_dist_median'))}, "
            f"smallest {_fmt(_median(rows, 'train_nn_dist_min'))}; "
            f"{100 * overlap.mean():.0f} % of poisons overlap; {int((overlap > 0).sum())}/"
            f"{len(rows)} trials have an overlapping poison, {int((overlap >= 0.5).sum())}/"
            f"{len(rows)} at least half"
        )
    if "feat_dist_after_unclipped" in rows:
        # paired: only the trials whose loop ran (an arm without crafting has no unclipped result)
        crafted = rows[pd.to_numeric(rows["feat_dist_after_unclipped"], errors="coerce").notna()]
        details.append(
            "8-bit poisons: clipping the loop's unclipped result to [0, 1] and rounding it moved "
            "the median poison-target distance from "
            f"{_fmt(_median(crafted, 'feat_dist_after_unclipped'), '{:.2f}')} to "
            f"{_fmt(_median(crafted, 'feat_dist_after'), '{:.2f}')} "
            f"({len(crafted)} crafted trials)"
        )
    if "poisons_reused" in rows:
        reused = int(rows["poisons_reused"].astype(object).eq(True).sum())
        pool = _values(rows, "attack.pool")
        details.append(
            f"poisons reused from a set crafted earlier (attack.pool: {pool}): "
            f"{reused}/{len(rows)} trials"
        )
    return details


def _enough(result: ClaimResult) -> None:
    """Replace a verdict drawn from fewer trials than the claim needs."""
    counts = [result.rate.n] if result.rate is not None else []
    if result.arms is not None and "n" in result.arms and result.claim.metric != "success":
        counts = list(result.arms["n"])
    if counts and min(counts) < result.claim.min_n and result.verdict is not Verdict.NOT_RUN:
        few = f"n = {min(counts)} < {result.claim.min_n} per arm"
        if result.verdict is Verdict.TOO_FEW:  # already waiting for something else: say both
            result.reason = f"{few}; {result.reason}"
            return
        as_measured = result.verdict_text
        result.verdict = Verdict.TOO_FEW
        result.reason = f"{few}; as measured: {as_measured}"


def headline_budget(results: Sequence[ClaimResult]) -> str | None:
    """The budget the claim that sets it reports (``Claim.sets_budget``), if any."""
    for result in results:
        if result.claim.sets_budget and result.arms is not None:
            return reported_budget(result.arms)
    return None


#: The trial stage whose time each end-to-end reduction scales.
_STAGE_OF_REDUCTION = {"attack.iters": "craft_s", "victim.epochs": "retrain_s"}


def e2e_paper_trial_seconds(ok: pd.DataFrame) -> float | None:
    """CPU seconds of one paper-scale end-to-end trial, scaled from the records' own stage times
    (the median over trials that crafted their poisons): each stage of ``_STAGE_OF_REDUCTION`` by
    its reduction (to the paper's value, ``E2E_REDUCTIONS``), retraining also by training images
    (to ``PAPER_E2E_TRAIN_SIZE``), evaluation as run. None without such records."""
    columns = {"craft_s", "retrain_s", "eval_s", "victim_train_size"}
    columns |= {reduction.column for reduction in E2E_REDUCTIONS}
    if ok.empty or not columns | {"scenario"} <= set(ok):
        return None
    rows = ok[ok["scenario"].eq("end_to_end")]
    if "poisons_reused" in rows:
        rows = rows[~rows["poisons_reused"].astype(object).eq(True)]
    number = {column: pd.to_numeric(rows[column], errors="coerce") for column in columns}
    stages = {stage: number[stage] for stage in ("craft_s", "retrain_s", "eval_s")}
    for reduction in E2E_REDUCTIONS:
        stage = _STAGE_OF_REDUCTION[reduction.column]
        stages[stage] = stages[stage] * float(reduction.full) / number[reduction.column]
    stages["retrain_s"] = stages["retrain_s"] * PAPER_E2E_TRAIN_SIZE / number["victim_train_size"]
    seconds = sum(stages.values()).dropna()
    return float(seconds.median()) if len(seconds) else None


def measure_claims(frame: pd.DataFrame, claims: Sequence[Claim] = CLAIMS) -> list[ClaimResult]:
    """Every claim measured on the ok records of ``frame``; a claim that sets the headline
    budget is measured before the ones that use it."""
    ok = with_labels(ok_trials(frame))
    e2e_trial_s = e2e_paper_trial_seconds(ok)
    setters = [c for c in claims if c.sets_budget]
    results: dict[str, ClaimResult] = {}
    for claim in setters:
        results[claim.key] = measure_claim(claim, ok, None)
    budget = headline_budget(list(results.values()))
    for claim in claims:
        if claim.key not in results:
            results[claim.key] = measure_claim(claim, ok, budget)
    for result in results.values():
        assumed = result.claim.assumed_paper_trial_s
        result.paper_trial_s = assumed if assumed is not None else e2e_trial_s
    return [results[c.key] for c in claims]


def gpu_estimate(result: ClaimResult) -> str:
    """The paper-scale run's GPU time, from its CPU seconds per trial and an assumed speed-up."""
    claim, seconds = result.claim, result.paper_trial_s
    if seconds is None:
        return "no GPU estimate: no end-to-end records with stage times to scale from"
    hours = claim.paper_trials * seconds / ASSUMED_GPU_SPEEDUP / 3600
    return (
        f"~{hours:.1f} GPU-hours for {claim.paper_trials} trials at "
        f"{seconds:,.0f} CPU-s each ({GPU_BASIS})"
    )


# Figures -------------------------------------------------------------------------------------


def plot_budget(results: Sequence[ClaimResult], out_dir: Path) -> list[Path]:
    """Success against the budget (claims 1, 2, 4): Wilson intervals, L-inf and L2 ladders."""
    fig, (ax,) = subplots(1, width=7.0)
    series = []
    for result in results:
        name = result.claim.budget_series
        if name and result.arms is not None and "budget_radius_255" in result.arms:
            series.append((name, result.arms))
    colours = palette_for([name for name, _ in series] or ["none"])
    for name, arms in series:
        for kind, marker in (("linf", "o"), ("l2", "s")):
            part = arms[arms["budget_norm"].eq(kind) & arms["budget_radius_255"].notna()]
            if part.empty:
                continue
            x = part["budget_radius_255"]
            ax.errorbar(
                x,
                part["rate"],
                yerr=[part["rate"] - part["ci_low"], part["ci_high"] - part["rate"]],
                marker=marker,
                capsize=3,
                color=colours[name],
                ls="-" if kind == "linf" else "--",
                label=f"{name}, {kind}",
            )
    ax.axhline(GOAL_RATE, color="grey", ls=":", lw=1)
    ax.set(
        xlabel="budget radius (L-inf in /255; L2 as its per-pixel equivalent in /255)",
        ylabel="one-shot success rate (95 % Wilson CI)",
        title="CIFAR-10 transfer analog: success vs perceptibility budget",
        ylim=(-0.02, 1.02),
    )
    if series:
        ax.legend()
    return save_figure(fig, out_dir, FIGURE_BUDGET, formats=("png",))


def plot_angles(results: Sequence[ClaimResult], out_dir: Path, budget: str | None) -> list[Path]:
    """Angular deviation per retraining epoch (claim 3): crafted, noise floor, end-to-end."""
    fig, axes = subplots(2, width=5.5)
    result = next(r for r in results if r.claim.figure == FIGURE_ANGLES)
    groups = []
    if len(result.records):
        crafted, floor, e2e = angle_groups(result.records, budget)
        if len(crafted):
            groups.append((0, f"transfer, crafted ({crafted['budget'].iloc[0]})", crafted))
        if len(floor):
            groups.append((0, "transfer, clean base (noise floor)", floor))
        if len(e2e):
            groups.append((1, "end-to-end", e2e))
    colours = palette_for([name for _, name, _ in groups] or ["none"])
    for axis, name, part in groups:
        curves = [a for a in part["angular_deviation_per_epoch"] if isinstance(a, list) and a]
        if not curves:
            continue
        length = min(map(len, curves))
        data = np.array([c[:length] for c in curves], dtype=float)
        mean = data.mean(0)
        half = 1.96 * data.std(0, ddof=1) / math.sqrt(len(data)) if len(data) > 1 else 0 * mean
        epochs = np.arange(1, length + 1)
        axes[axis].errorbar(
            epochs, mean, yerr=half if length < 5 else None, color=colours[name],
            label=f"{name} (n={len(data)})",
            marker="o" if length < 5 else None, capsize=3 if length < 5 else 0,
        )  # fmt: skip
        axes[axis].fill_between(epochs, mean - half, mean + half, color=colours[name], alpha=0.2)
        if axis == 1 and "control_drift_deg" in part:
            drift = pd.to_numeric(part["control_drift_deg"], errors="coerce").median()
            axes[1].axhline(drift, color="grey", ls=":", lw=1, label="control vs clean model")
    if result.claim.paper_value is not None:
        paper_deg = result.claim.paper_value
        axes[0].axhline(paper_deg, color="grey", ls=":", lw=1, label=f"paper: {paper_deg:g} deg")
    axes[0].set(
        xlabel="head retraining epoch", ylabel="angle to the control (deg)", title="Transfer"
    )
    axes[1].set(xlabel="retraining epoch", ylabel="angle to the control (deg)", title="End-to-end")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(fig, out_dir, FIGURE_ANGLES, formats=("png",))


def plot_e2e(results: Sequence[ClaimResult], out_dir: Path) -> list[Path]:
    """End-to-end success rates with Wilson intervals (claims 5-8), one bar per arm."""
    bars = []
    for result in results:
        if result.claim.scenario != "end_to_end" or result.records.empty:
            continue
        if result.arms is not None and len(result.arms):
            column = result.arms.columns[0]
            for _, row in result.arms.iterrows():
                bars.append((f"{result.claim.key}: {row[column]}", row))
        elif result.rate is not None:
            low, high = result.rate.interval
            bars.append(
                (
                    f"{result.claim.key}: as run",
                    {"rate": result.rate.rate, "ci_low": low, "ci_high": high},
                )
            )
    fig, (ax,) = subplots(1, width=7.0)
    for i, (_, row) in enumerate(bars):
        ax.bar(i, row["rate"], color="#4c72b0")
        ax.errorbar(
            i, row["rate"], yerr=[[row["rate"] - row["ci_low"]], [row["ci_high"] - row["rate"]]],
            color="black", capsize=3,
        )  # fmt: skip
    ax.set_xticks(range(len(bars)), [name for name, _ in bars], rotation=30, ha="right")
    ax.set(ylabel="success rate (95 % Wilson CI)", ylim=(0, 1.02), title="End-to-end claims")
    if not bars:
        ax.text(0.5, 0.5, "no end-to-end records", ha="center", transform=ax.transAxes)
    return save_figure(fig, out_dir, FIGURE_E2E, formats=("png",))


def _records_of(results: Sequence[ClaimResult], figure: str) -> pd.DataFrame:
    """The records of the claim that ``figure`` shows (none when no claim has it)."""
    for result in results:
        if result.claim.figure == figure:
            return result.records
    return pd.DataFrame()


def plot_overlap(results: Sequence[ClaimResult], out_dir: Path) -> list[Path]:
    """Claim 5's overlap, per trial: the poisons' mean and closest feature distance to the target
    against the target's distance to its nearest clean training image. Below the diagonal, the
    poisons are closer to the target than any clean training image (the overlap criterion)."""
    rows = _records_of(results, FIGURE_OVERLAP)
    fig, (ax,) = subplots(1, width=6.0)
    needed = {"target_nn_train_dist", "feat_dist_after", "feat_dist_after_min", "success"}
    if rows.empty or not needed <= set(rows):
        ax.text(0.5, 0.5, "no end-to-end records with the overlap fields", ha="center",
                transform=ax.transAxes)  # fmt: skip
        return save_figure(fig, out_dir, FIGURE_OVERLAP, formats=("png",))
    x = pd.to_numeric(rows["target_nn_train_dist"])
    success = rows["success"].astype(bool).to_numpy()
    colours = palette_for(["success", "failure"])
    for column, marker, what in (
        ("feat_dist_after", "o", "mean poison"),
        ("feat_dist_after_min", "v", "closest poison"),
    ):
        y = pd.to_numeric(rows[column])
        for outcome, mask in (("success", success), ("failure", ~success)):
            ax.scatter(x[mask], y[mask], marker=marker, color=colours[outcome], alpha=0.8,
                       label=f"{what}, {outcome}")  # fmt: skip
    top = float(max(x.max(), pd.to_numeric(rows["feat_dist_after"]).max())) * 1.1
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="overlap boundary")
    ax.set(
        xlabel="target's distance to its nearest clean training image",
        ylabel="poison-target feature distance (clean model)",
        xlim=(0, top), ylim=(0, top),
        title="Claim 5: do the poisons overlap the target?",
    )  # fmt: skip
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir, FIGURE_OVERLAP, formats=("png",))


def plot_poisons(results: Sequence[ClaimResult], out_dir: Path) -> list[Path]:
    """Claim 7: success against the number of poisons, one line per opacity, Wilson intervals."""
    rows = _records_of(results, FIGURE_POISONS)
    fig, (ax,) = subplots(1, width=6.0)
    if rows.empty:
        ax.text(0.5, 0.5, "no records", ha="center", transform=ax.transAxes)
        return save_figure(fig, out_dir, FIGURE_POISONS, formats=("png",))
    frame = rows.assign(
        poisons=rows["attack.num_poisons"].astype(int),
        opacity=opacity_percent(rows),
    )
    table = success_table(frame, by=["opacity", "poisons"])
    opacities = sorted(table["opacity"].unique())
    colours = palette_for(opacities)
    # the opacities side by side at each count (0.8 poisons apart), so that equal rates stay apart
    dodge = {o: 0.8 * (i - (len(opacities) - 1) / 2) for i, o in enumerate(opacities)}
    for index, (opacity, part) in enumerate(table.groupby("opacity")):
        part = part.sort_values("poisons")
        x = part["poisons"] + dodge[opacity]
        ax.errorbar(
            x, part["rate"],
            yerr=[part["rate"] - part["ci_low"], part["ci_high"] - part["rate"]],
            marker="o", capsize=3, color=colours[opacity], label=f"{opacity} % opacity",
        )  # fmt: skip
        for position, (_, row) in zip(x, part.iterrows(), strict=True):
            ax.annotate(f"n={int(row['n'])}", (position, row["rate"]), fontsize=6,
                        textcoords="offset points", xytext=(3, 4 + 8 * index))  # fmt: skip
    ax.set(
        xlabel="number of poisons", ylabel="success rate (95 % Wilson CI)", ylim=(0, 1.02),
        title="Claim 7: success against the number of poisons (bird -> dog)",
    )  # fmt: skip
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, FIGURE_POISONS, formats=("png",))


# Markdown ------------------------------------------------------------------------------------


def _fmt(value: float | None, pattern: str = "{:.1f}") -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else pattern.format(value)
    )


def _arm_markdown(arms: pd.DataFrame) -> list[str]:
    column = arms.columns[0]
    overlap = "overlap_pct" in arms and arms["overlap_pct"].notna().any()
    head = (
        f"| {column} | n | successes | rate (95 % CI) | median PSNR dB | max L-inf /255 | "
        "control successes | accuracy drop pt | wall min |"
    )
    if overlap:
        head += " median poison-target distance | poisons overlapping % |"
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for _, row in arms.iterrows():
        line = (
            f"| {row[column]} | {row['n']} | {row['successes']} | {100 * row['rate']:.0f} % "
            f"({100 * row['ci_low']:.0f}-{100 * row['ci_high']:.0f}) | "
            f"{_fmt(row.get('psnr_median'))} | {_fmt(row.get('linf255_max'))} | "
            f"{row.get('control_successes', 'n/a')} | {_fmt(row['acc_drop_pt'], '{:.2f}')} | "
            f"{_fmt(row['wall_min'])} |"
        )
        if overlap:
            line += f" {_fmt(row['feat_dist_median'])} | {_fmt(row['overlap_pct'], '{:.0f}')} |"
        lines.append(line)
    return lines


def render(
    results: Sequence[ClaimResult], command: str, frame: pd.DataFrame, notes: str = ""
) -> str:
    """The report's Markdown."""
    total_s = wall_seconds(ok_trials(frame))
    sha = ", ".join(
        sorted(map(str, pd.unique(frame.get("git_sha", pd.Series(dtype=str)).dropna())))
    )
    lines = [
        "# Replication report: Poison Frogs! claims measured by frogs",
        "",
        f"Generated by `{command}` from {len(frame)} trial records (frogs commits: "
        f"{sha or 'n/a'}). Do not edit by hand: edit `analysis/claims.py` or rerun.",
        "Verdict rules: a rate is *reproduced* when the paper's number lies in frogs' Wilson 95 % "
        "interval; *at reduced scale* when the run was reduced (see each claim); qualitative "
        "claims (outliers, #poisons, ablation) check the direction the paper reports. "
        "Perceptibility is the worst poison of each trial against its base (the image it is "
        "labelled as).",
        "",
        "| # | claim | paper | frogs (n, 95 % CI) | median PSNR dB | max L-inf /255 | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.claim.key} | {r.claim.title} | {r.claim.paper} | {r.number} | "
            f"{_fmt(r.psnr_median)} | {_fmt(r.linf255_max)} | {r.verdict_text} |"
        )
    if notes:
        lines += ["", notes.strip()]
    for r in results:
        lines += ["", f"## {r.claim.key}. {r.claim.title}", ""]
        lines.append(f"- paper: {r.claim.paper}")
        lines.append(f"- frogs: {r.number}")
        lines.append(f"- verdict: {r.verdict_text}")
        lines += [f"- {detail}" for detail in r.details]
        status = "as run here" if not r.records.empty else "not run here; the command would be"
        lines.append(f"- command ({status}): `{r.claim.command}`")
        lines.append(f"- scale: {r.claim.scale}")
        for effect in r.reductions:
            lines.append(f"- reduction measured: {effect}")
        if r.claim.reductions and not r.reductions:
            names = ", ".join(red.what for red in r.claim.reductions)
            lines.append(f"- reductions not yet measured on paired targets: {names}")
        lines.append(f"- wall time here: {r.wall_s / 60:.1f} min of trial stages")
        lines.append(f"- paper scale: `{r.claim.paper_command}`; {gpu_estimate(r)}")
        lines.append(f"- figure: ![{r.figure}](img/{r.figure}.png)")
        if r.arms is not None and len(r.arms):
            lines += ["", *_arm_markdown(r.arms)]
    lines += [
        "",
        "## Compute",
        "",
        f"Trial stages of every record read: {total_s / 60:.1f} min wall on the recording "
        "machines (records' craft_s + retrain_s + eval_s; pretraining the clean models is not in "
        "the records and is stated with each claim's scale).",
        "",
    ]
    return "\n".join(lines)


def write_replication(
    frame: pd.DataFrame, out: Path, command: str, notes: str = ""
) -> tuple[Path, list[ClaimResult]]:
    """Measure every claim, draw the figures into ``out.parent / img`` and write ``out``."""
    results = measure_claims(frame)
    images = out.parent / "img"
    budget = headline_budget(results)
    with style():
        plot_budget(results, images)
        plot_angles(results, images, budget)
        plot_e2e(results, images)
        plot_overlap(results, images)
        plot_poisons(results, images)
    atomic_write_text(out, render(results, command, frame, notes))
    return out, results
