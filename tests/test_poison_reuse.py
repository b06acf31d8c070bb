"""Poison reuse across poison counts (``attack.pool``), as the official end-to-end code does it:
the largest set is crafted once per target, a smaller count uses its first N, and the trial's
record equals crafting N on their own."""

from __future__ import annotations

import pytest

from frogs.config.settings import updated, validate
from frogs.errors import ConfigError
from frogs.experiment.run import run

COMPARED = (
    "target_index",
    "base_indices",
    "success",
    "target_pred",
    "feat_dist_before",
    "feat_dist_after",
    "feat_dist_after_min",
    "feat_dist_after_max",
    "feat_dist_after_unclipped",
    "poisons_overlap_fraction",
    "target_nn_train_dist",
    "poison_l2_base_mean",
    "poison_linf255_base_worst",
    "poison_psnr_base_worst",
    "poison_ssim_base_mean",
    "poison_linf255_start_worst",
    "target_base_prob",
)


def _authors_e2e(settings, num_poisons, pool=None, multi_base=True):
    return updated(
        settings,
        {
            "attack.recipe": "authors_e2e",
            "attack.lr": 1.0,  # [0, 255] pixels: large enough to move in 20 iterations
            "attack.beta0": 0.1,
            "attack.constraint": "l2",
            "attack.eps": None,
            "attack.iters": 20,
            "attack.opacity": 0.3,
            "attack.num_poisons": num_poisons,
            "attack.pool": pool,
            "attack.multi_base": multi_base,
            "trials": 2,
        },
    )


@pytest.mark.parametrize("multi_base", [True, False])
def test_first_n_of_a_pool_equal_crafting_n(synthetic_settings, tmp_path, multi_base):
    pooled = run(_authors_e2e(synthetic_settings, 2, pool=4, multi_base=multi_base), tmp_path / "a")
    alone = run(_authors_e2e(synthetic_settings, 2, multi_base=multi_base), tmp_path / "b")
    again = run(_authors_e2e(synthetic_settings, 3, pool=4, multi_base=multi_base), tmp_path / "c")
    assert [r["status"] for r in pooled + alone + again] == ["ok"] * 6
    for with_pool, without in zip(pooled, alone, strict=True):
        for key in COMPARED:
            assert key in with_pool, key
            expected = without[key]
            if isinstance(expected, float):
                assert with_pool[key] == pytest.approx(expected, rel=1e-5, abs=1e-6), key
            else:
                assert with_pool[key] == expected, key
        assert with_pool["poisons_crafted"] == 4 and without["poisons_crafted"] == 2
        assert len(with_pool["base_indices"]) == 2
    # the 3-poison job found the 4-poison set the first job crafted, and used its first three
    assert [r["poisons_reused"] for r in pooled] == [False, False]
    assert [r["poisons_reused"] for r in again] == [True, True]
    for first, second in zip(pooled, again, strict=True):
        assert second["base_indices"][:2] == first["base_indices"]
        assert len(second["base_indices"]) == 3
    if not multi_base:
        assert len(set(pooled[0]["base_indices"])) == 1


def test_pool_must_hold_the_poisons_and_needs_independent_poisons(synthetic_settings):
    synthetic_settings = updated(
        synthetic_settings,
        {
            "attack.num_poisons": 5,
            "attack.pool": 3,
        },
    )
    with pytest.raises(
        ConfigError, match=r"attack\.pool=3 is not allowed with attack\.num_poisons=5"
    ):
        validate(synthetic_settings)


def test_closest_base_is_the_nearest_in_clean_features(synthetic_settings, tmp_path):
    """``attack.base_selection=closest`` (the official single-base arm): the base-class test
    image whose clean features are nearest the target's."""
    import torch

    from frogs.experiment.prepare import prepare_job, resolve_device

    settings = _authors_e2e(synthetic_settings, 3, multi_base=False)
    settings = updated(settings, {"attack.base_selection": "closest"})
    job = prepare_job(settings, resolve_device("cpu"))
    trials = job.trials
    plan = trials.plan(0)
    with torch.no_grad():
        goal = job.victim.evaluator.feature_fn(plan.target_image.unsqueeze(0)).flatten(1)
        candidates = trials.data.test_x[trials.base_candidates]
        features = job.victim.evaluator.feature_fn(candidates).flatten(1)
    nearest = int(trials.base_candidates[(features - goal).norm(dim=1).argmin()])
    assert plan.used_bases.tolist() == [nearest] * 3
    records = run(settings, tmp_path)
    assert records[0]["base_indices"] == [nearest] * 3
    assert records[0]["attack.base_selection"] == "closest"
