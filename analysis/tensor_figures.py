"""Figures drawn from the tensors a trial saved: the poison images (Fig. 4) and the
feature-space picture of the clean and the poisoned model (Figs. 3 and 11).

torch is imported only when a record points at saved tensors, so the record-only
analysis starts fast and works without it.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.outputs import save_figure
from analysis.plotting import FigureDataError, figure, need, palette_for, subplots
from analysis.stats import ok_trials

logger = logging.getLogger(__name__)

STATES = ("clean", "poisoned")
POISON_KEYS = ("target", "bases", "poisons")
FEATURE_KEYS = (*STATES, "target_task_index", "base_task_index")
STATE_KEYS = ("target", "poisons", "target_class", "base_class", "head_weight")


def _load_tensors(
    frame: pd.DataFrame, column: str, limit: int, keys: tuple[str, ...]
) -> list[tuple[pd.Series, dict]]:
    """Up to ``limit`` (row, tensors) pairs read from ``job_dir / row[column]``.

    Successful trials come first (they make the clearer picture). Files that cannot be
    read or lack one of ``keys`` are logged and passed over; none usable raises
    ``FigureDataError``.
    """
    try:
        import torch
    except ImportError as exc:
        raise FigureDataError(f"torch is not importable ({exc})") from None
    rows = frame[frame[column].notna()]
    if "success" in rows:
        rows = rows.iloc[np.argsort(~rows["success"].astype(bool).to_numpy(), kind="stable")]
    out: list[tuple[pd.Series, dict]] = []
    tried: list[str] = []
    for _, row in rows.iterrows():
        path = Path(row["job_dir"]) / str(row[column])
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            tried.append(str(path))
            continue
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        if missing:
            logger.warning("%s lacks %s", path, ", ".join(missing))
            tried.append(str(path))
            continue
        out.append((row, data))
        if len(out) >= limit:
            break
    if not out:
        raise FigureDataError(
            f"none of the {len(tried)} saved {column} files could be used "
            f"(first: {tried[0] if tried else '-'})"
        )
    return out


def _image(tensor: Any) -> tuple[np.ndarray, str | None]:
    """A (C,H,W) tensor in [0, 1] as an image array for imshow and its colour map."""
    array = np.clip(tensor.detach().float().cpu().numpy(), 0.0, 1.0)
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0], "gray"
    if array.ndim == 3:
        return np.transpose(array, (1, 2, 0)), None
    return array, "gray"


@figure("fig_poison_grid")
def plot_poison_grid(
    frame: pd.DataFrame, out_dir: Path, max_trials: int = 4, max_poisons: int = 4
) -> list[Path] | None:
    """Target, bases and poisons of up to ``max_trials`` trials from saved poisons (Fig. 4)."""
    ok = ok_trials(frame)
    need(ok, ["poisons_path", "job_dir"])
    loaded = _load_tensors(ok, "poisons_path", max_trials, POISON_KEYS)
    k = max(min(max_poisons, len(data["poisons"])) for _, data in loaded)
    fig = _grid_figure(len(loaded), 1 + 2 * k)
    axes = fig.subplots(len(loaded), 1 + 2 * k, squeeze=False)
    for i, (row, data) in enumerate(loaded):
        outcome = {True: "success", False: "failure"}.get(row.get("success"), "")
        cells = [(data["target"], f"target ({row.get('target_class', '?')})\n{outcome}")]
        for j in range(min(k, len(data["poisons"]))):
            base = data["bases"][min(j, len(data["bases"]) - 1)]
            cells.append((base, f"base {j + 1} ({row.get('base_class', '?')})"))
            cells.append((data["poisons"][j], f"poison {j + 1}"))
        for ax, (tensor, title) in zip(axes[i], cells, strict=False):
            image, cmap = _image(tensor)
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(title, fontsize=8)
        for ax in axes[i]:
            ax.set_axis_off()
    return save_figure(fig, out_dir, "fig_poison_grid")


def _grid_figure(rows: int, cols: int) -> Any:
    """An empty figure sized for a ``rows`` x ``cols`` image grid."""
    from matplotlib.figure import Figure

    return Figure(figsize=(1.4 * cols, 1.7 * rows), layout="constrained")


@dataclass(frozen=True)
class PlaneProjection:
    """Points of one model projected on the plane of Fig. 3, and the boundary in it.

    Axis 1 is the unit base−target centroid direction ``u``; axis 2 the unit component of
    the weight vector ``w = W[base] − W[target]`` orthogonal to ``u``. Since ``w`` lies in
    this plane, ``a·w_u + b·w_v + offset = 0`` is exactly where the two logits are equal.
    """

    points: dict[str, np.ndarray]
    w_u: float
    w_v: float
    offset: float


def project_features(
    features: Mapping[str, Any], target_index: int, base_index: int
) -> PlaneProjection:
    """Project ``target_class``, ``base_class``, ``target`` and ``poisons`` features."""
    arrays = {k: np.asarray(v.detach().double().cpu().numpy()) for k, v in features.items()}
    target_centroid = arrays["target_class"].mean(axis=0)
    base_centroid = arrays["base_class"].mean(axis=0)
    u = base_centroid - target_centroid
    if not np.linalg.norm(u) > 0:
        raise FigureDataError("the target- and base-class centroids coincide")
    u /= np.linalg.norm(u)
    w = arrays["head_weight"][base_index] - arrays["head_weight"][target_index]
    v = w - (w @ u) * u
    if np.linalg.norm(v) <= 1e-9 * max(np.linalg.norm(w), 1e-30):
        # w is parallel to u: any second axis shows the same boundary; use the largest spread
        stacked = np.vstack([arrays["target_class"], arrays["base_class"]])
        residual = stacked - np.outer(stacked @ u, u)
        v = np.linalg.svd(residual - residual.mean(axis=0), full_matrices=False)[2][0]
        v -= (v @ u) * u
    v /= np.linalg.norm(v)
    origin = (target_centroid + base_centroid) / 2.0
    points = {}
    for name in ("target_class", "base_class", "poisons", "target"):
        centred = np.atleast_2d(arrays[name]) - origin
        points[name] = np.column_stack([centred @ u, centred @ v])
    bias = arrays.get("head_bias")
    db = 0.0 if bias is None else float(bias[base_index] - bias[target_index])
    return PlaneProjection(points, float(w @ u), float(w @ v), float(w @ origin) + db)


@figure("fig_feature_space")
def plot_feature_space(
    frame: pd.DataFrame, out_dir: Path, trial_id: str | None = None
) -> list[Path] | None:
    """Feature space of one trial, clean vs poisoned model side by side (Figs. 3 and 11)."""
    ok = ok_trials(frame)
    need(ok, ["features_path", "job_dir"])
    if trial_id is not None:
        ok = ok[ok["trial_id"] == trial_id]
        need(ok, ["features_path"], what=f"ok records of trial {trial_id}")
    ((row, data),) = _load_tensors(ok, "features_path", 1, FEATURE_KEYS)
    for state in STATES:
        missing = [k for k in STATE_KEYS if k not in data[state]]
        if missing:
            raise FigureDataError(f"{row['features_path']} {state} lacks {', '.join(missing)}")
    t_idx, b_idx = int(data["target_task_index"]), int(data["base_task_index"])
    fig, axes = subplots(2, width=5.0, height=4.5)
    colours = palette_for(["target_class", "base_class", "poisons", "target"])
    for ax, state in zip(axes, STATES, strict=True):
        plane = project_features(data[state], t_idx, b_idx)
        labels = {
            "target_class": (f"{row.get('target_class', 'target')} class", "o", 12, 0.35),
            "base_class": (f"{row.get('base_class', 'base')} class", "o", 12, 0.35),
            "poisons": ("poisons", "^", 45, 0.9),
            "target": ("target", "*", 260, 1.0),
        }
        for name, (label, marker, size, alpha) in labels.items():
            xy = plane.points[name]
            ax.scatter(
                xy[:, 0], xy[:, 1], s=size, marker=marker, alpha=alpha, color=colours[name],
                edgecolors="black" if name in ("poisons", "target") else "none", label=label,
            )  # fmt: skip
        _boundary(ax, plane)
        ax.set(
            title=f"{state} model",
            xlabel="base − target centroid direction",
            ylabel="weight-vector direction, orthogonal part",
        )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(f"Feature space, trial {row['trial_id']}")
    return save_figure(fig, out_dir, "fig_feature_space")


def _boundary(ax: Any, plane: PlaneProjection) -> None:
    """Draw the base/target decision boundary (equal logits) across the current view."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    if abs(plane.w_v) > 1e-12 * max(abs(plane.w_u), 1e-30):
        xs = np.array([x0, x1])
        ax.plot(xs, -(plane.offset + plane.w_u * xs) / plane.w_v, "k--", lw=1, label="boundary")
    elif plane.w_u != 0:
        ax.axvline(-plane.offset / plane.w_u, color="k", ls="--", lw=1, label="boundary")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
