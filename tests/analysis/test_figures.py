"""Each figure is drawn from records that hold its columns and skipped with a message otherwise."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import load_records, make_figures, project_features


def frame_of(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    frame["success"] = frame["success"].astype("boolean")
    return frame


@pytest.fixture
def rich(make_trials, record) -> pd.DataFrame:
    """Records that hold every record-only figure's columns."""
    records = []
    for k, count in enumerate((1, 10, 50)):
        for opacity in (0.2, 0.3):
            records += make_trials(
                k + 1, 4, start=len(records), attack__num_poisons=count, attack__opacity=opacity
            )
    records += make_trials(1, 3, start=len(records), attack__multi_base=False)
    records += make_trials(
        0, 3, start=len(records), attack__optimize=False, target_selection="outlier"
    )
    records += make_trials(2, 3, start=len(records), scenario="transfer", victim="transfer")
    return frame_of(records)


FIGURES = {
    "plot_poison_count": "fig_poison_count",
    "plot_outliers": "fig_outliers",
    "plot_ablation": "fig_ablation",
    "plot_transfer": "fig_transfer",
    "plot_clean_accuracy": "fig_clean_accuracy",
    "plot_angular_per_epoch": "fig_angular_per_epoch",
}


@pytest.mark.parametrize(("function", "stem"), FIGURES.items())
def test_figure_written_as_png_and_pdf(function, stem, rich, tmp_path) -> None:
    paths = getattr(analysis, function)(rich, tmp_path)
    assert [p.name for p in paths] == [f"{stem}.png", f"{stem}.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.fixture
def budgets(make_trials) -> pd.DataFrame:
    """A sweep of the budget radius (linf 2, 4, 8 /255; l2 without a radius), with PSNRs."""
    records = []
    for k, radius in enumerate((2.0, 4.0, 8.0)):
        for psnr in (40.0 - 3 * k, 38.0 - 3 * k, None):
            records += make_trials(
                k, 2, start=len(records), eps=radius / 255, eps_255=radius,
                poison_psnr_base_worst=psnr,
            )  # fmt: skip
    records += make_trials(1, 2, start=len(records), constraint="l2", eps=None, eps_255=None)
    return frame_of(records)


def test_perceptibility_figure_when_eps_varies(budgets, tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="analysis"):
        paths = analysis.plot_perceptibility(budgets, tmp_path)
    assert [p.name for p in paths] == ["fig_perceptibility.png", "fig_perceptibility.pdf"]
    assert "2 trial(s) without eps_255 left out" in caplog.text


def test_perceptibility_figure_without_psnr_draws_success_only(budgets, tmp_path, caplog):
    frame = budgets.drop(columns="poison_psnr_base_worst")
    with caplog.at_level(logging.INFO, logger="analysis"):
        assert analysis.plot_perceptibility(frame, tmp_path) is not None
    assert "drawing success only" in caplog.text


def test_make_figures_draws_perceptibility_only_when_eps_varies(budgets, rich, tmp_path):
    assert "fig_perceptibility" in make_figures(budgets, tmp_path / "varied").written
    skipped = make_figures(rich, tmp_path / "fixed").skipped
    assert "more than one distinct eps_255 (found: 8)" in skipped["fig_perceptibility"]


SKIPS = {
    "plot_poison_count": (
        lambda f: f.assign(**{"attack.num_poisons": 5}),
        "more than one distinct attack.num_poisons",
    ),
    "plot_outliers": (lambda f: f.drop(columns="target_true_prob_clean"), "target_true_prob_clean"),
    "plot_ablation": (
        lambda f: f.assign(**{"attack.multi_base": True, "attack.optimize": True}),
        "two ablation arms",
    ),
    "plot_transfer": (lambda f: f.assign(scenario="end_to_end"), "no transfer"),
    "plot_clean_accuracy": (lambda f: f.assign(clean_acc_after=None), "clean_acc_after"),
    "plot_angular_per_epoch": (
        lambda f: f.drop(columns="angular_deviation_per_epoch"),
        "angular_deviation_per_epoch",
    ),
    "plot_perceptibility": (lambda f: f, "more than one distinct eps_255"),
    "plot_defenses": (lambda f: f, "more than one attack or defense"),
    "plot_poison_grid": (lambda f: f, "poisons_path"),
    "plot_feature_space": (lambda f: f, "features_path"),
}


@pytest.mark.parametrize(("function", "case"), SKIPS.items())
def test_figure_skipped_with_reason(function, case, rich, tmp_path, caplog) -> None:
    strip, reason = case
    with caplog.at_level(logging.INFO, logger="analysis"):
        assert getattr(analysis, function)(strip(rich), tmp_path) is None
    assert "skipping fig_" in caplog.text and reason in caplog.text
    assert not list(tmp_path.iterdir())


def test_failed_trials_are_not_plotted(rich, make_failed, tmp_path, caplog) -> None:
    failed = frame_of([make_failed(r) for r in rich.to_dict("records")])
    with caplog.at_level(logging.INFO, logger="analysis"):
        assert analysis.plot_clean_accuracy(failed, tmp_path) is None
    assert "no ok records" in caplog.text


def test_transfer_draws_one_panel_when_only_angles(rich, tmp_path, caplog) -> None:
    frame = rich.drop(columns=["target_base_prob"])
    with caplog.at_level(logging.INFO, logger="analysis"):
        assert analysis.plot_transfer(frame, tmp_path) is not None
    assert "angular deviation only" in caplog.text


def test_figures_from_old_records(old_record, write_job, tmp_path) -> None:
    records = [
        old_record(i, success=i % 3 == 0, num_poisons=(1, 10)[i % 2], constraint="linf", eps=e)
        for i, e in enumerate([2 / 255, 8 / 255] * 4)
    ]
    figures = make_figures(load_records(write_job(records)).frame, tmp_path / "figs")
    assert {"fig_poison_count", "fig_clean_accuracy", "fig_transfer"} - set(figures.written) == {
        "fig_transfer"
    }
    assert "fig_perceptibility" in figures.written  # eps_255 derived from schema 1's eps


def test_tensor_figures_from_saved_files(tensor_job, tmp_path) -> None:
    frame = load_records(tensor_job).frame
    grid = analysis.plot_poison_grid(frame, tmp_path)
    space = analysis.plot_feature_space(frame, tmp_path, trial_id="t000001")
    assert [p.name for p in grid] == ["fig_poison_grid.png", "fig_poison_grid.pdf"]
    assert [p.name for p in space] == ["fig_feature_space.png", "fig_feature_space.pdf"]


def test_grayscale_poison_grid(write_job, record, save_tensors, tmp_path) -> None:
    job = tmp_path / "gray"
    write_job([record(0, **save_tensors(job, 0, channels=1))], job="gray")
    assert analysis.plot_poison_grid(load_records(job).frame, tmp_path / "out") is not None


def test_missing_tensor_files_skip(tensor_job, tmp_path, caplog) -> None:
    for path in tensor_job.glob("*/*.pt"):
        path.unlink()
    frame = load_records(tensor_job).frame
    with caplog.at_level(logging.INFO, logger="analysis"):
        assert analysis.plot_poison_grid(frame, tmp_path) is None
    assert "could be used" in caplog.text


def test_projection_keeps_the_decision_boundary() -> None:
    """Points on either side of the projected boundary line are on the same side of the
    real one: w lies in the projection plane, so the logit difference is preserved."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(3)
    features = {
        "target": torch.randn(6, generator=g),
        "poisons": torch.randn(4, 6, generator=g),
        "target_class": torch.randn(30, 6, generator=g) - 1,
        "base_class": torch.randn(30, 6, generator=g) + 1,
        "head_weight": torch.randn(3, 6, generator=g),
        "head_bias": torch.randn(3, generator=g),
    }
    plane = project_features(features, target_index=0, base_index=2)
    weight = features["head_weight"].double()
    w = (weight[2] - weight[0]).numpy()
    bias = features["head_bias"].double()
    db = float(bias[2] - bias[0])
    for name in ("target_class", "base_class", "poisons"):
        x = features[name].double().numpy()
        xy = plane.points[name]
        projected = xy[:, 0] * plane.w_u + xy[:, 1] * plane.w_v + plane.offset
        np.testing.assert_allclose(projected, x @ w + db, rtol=1e-9, atol=1e-9)
    centroid_axis = plane.points["base_class"].mean(0) - plane.points["target_class"].mean(0)
    assert centroid_axis[0] > 0 and abs(centroid_axis[1]) < 1e-9


def test_make_figures_reports_written_and_skipped(rich, tmp_path) -> None:
    figures = make_figures(rich, tmp_path)
    assert set(figures.written) == set(FIGURES.values())
    assert set(figures.skipped) == {
        "fig_perceptibility",
        "fig_poison_grid",
        "fig_feature_space",
        "fig_defenses",
    }
    assert "poisons_path" in figures.skipped["fig_poison_grid"]


def test_tensor_file_without_needed_keys_is_passed_over(tensor_job, tmp_path, caplog) -> None:
    torch = pytest.importorskip("torch")
    for path in tensor_job.glob("poisons/*.pt"):
        torch.save({"target": torch.zeros(3, 8, 8)}, path)
    frame = load_records(tensor_job).frame
    with caplog.at_level(logging.INFO, logger="analysis"):
        assert analysis.plot_poison_grid(frame, tmp_path) is None
    assert "lacks bases, poisons" in caplog.text


def test_outlier_bars_are_subsampled_beyond_max_targets(rich, tmp_path) -> None:
    assert analysis.plot_outliers(rich, tmp_path, max_targets=5) is not None
