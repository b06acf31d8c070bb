"""``attack.stop_distance=auto``: the smallest distance between two distinct training features."""

from __future__ import annotations

import pytest
import torch

from frogs.attacks.feature_collision import min_training_feature_distance
from frogs.config.settings import updated
from frogs.errors import ConfigError
from frogs.experiment.run import run


def test_minimum_distance_ignores_duplicates():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [10.0, 0.0], [0.0, 7.0]])
    # (0,0)-(3,4) = 5; (3,4)-(0,7) = 4.24; the duplicated (3,4) pair (distance 0) is ignored
    assert min_training_feature_distance(points) == pytest.approx(18**0.5)
    with pytest.raises(ConfigError, match="stop_distance=auto"):
        min_training_feature_distance(torch.ones(3, 2))


def test_auto_stop_distance_is_resolved_and_recorded(synthetic_settings, tmp_path):
    synthetic_settings = updated(synthetic_settings, {"attack.stop_distance": "auto"})
    records = run(synthetic_settings, tmp_path)
    assert {r["attack.stop_distance"] for r in records} == {"auto"}
    distances = {r["stop_distance"] for r in records}
    assert len(distances) == 1 and next(iter(distances)) > 0
    for record in records:  # crafting that ended early ended because every poison got there
        if record["craft_iters_run"] < synthetic_settings.attack.iters:
            # (+0.05: the 8-bit rounding after crafting may move a poison's features slightly)
            assert record["feat_dist_after_max"] < record["stop_distance"] + 0.05


def test_bad_stop_distance_is_a_clear_error(synthetic_settings, tmp_path):
    synthetic_settings = updated(synthetic_settings, {"attack.stop_distance": "soon"})
    from frogs.config.settings import validate

    with pytest.raises(ConfigError, match=r"attack\.stop_distance='soon'"):
        validate(synthetic_settings)
