"""The default task's criterion: the pair of classes a clean model confuses most."""

from __future__ import annotations

import torch

from frogs.data.datasets import SyntheticDatasetSettings, load_dataset
from frogs.models.confusion import class_confusions


def test_most_confused_pair_comes_first_with_its_rate_and_mean_probability():
    data = load_dataset(SyntheticDatasetSettings())
    labels = data.test_y.clone()
    # A classifier that calls every second c2 test image c3 and every c0 image c0.
    c2 = torch.nonzero(labels == 2).flatten()
    answers = labels.clone()
    answers[c2[::2]] = 3
    lookup = {bytes(x.numpy().tobytes()): int(a) for x, a in zip(data.test_x, answers, strict=True)}

    def classify(batch: torch.Tensor) -> torch.Tensor:
        chosen = torch.tensor([lookup[bytes(x.numpy().tobytes())] for x in batch])
        return torch.nn.functional.one_hot(chosen, 4).float() * 20

    usable = torch.ones(len(labels), dtype=torch.bool)
    pairs = class_confusions(classify, data, usable)
    first = pairs[0]
    assert (first.target, first.base) == ("c2", "c3")
    assert first.count == len(c2)
    assert abs(first.rate - len(c2[::2]) / len(c2)) < 1e-9
    assert 0.45 < first.mean_p_base < 0.55
    assert all(p.rate == 0 for p in pairs[1:])
    assert len(pairs) == 4 * 3


def test_left_out_images_and_classes_do_not_count():
    data = load_dataset(SyntheticDatasetSettings())

    def classify(batch: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(batch), 2).index_fill_(1, torch.tensor([1]), 5.0)  # all "c1"

    usable = torch.ones(len(data.test_y), dtype=torch.bool)
    usable[torch.nonzero(data.test_y == 0).flatten()[:3]] = False
    pairs = class_confusions(classify, data, usable, classes=[0, 1])
    assert [(p.target, p.base) for p in pairs] == [("c0", "c1"), ("c1", "c0")]
    assert pairs[0].rate == 1.0
    assert pairs[0].count == int((data.test_y == 0).sum()) - 3
