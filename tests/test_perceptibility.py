"""How visible a poison is: distances, PSNR, SSIM, and the record fields built from them."""

from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import structural_similarity

from frogs.measures.perceptibility import (
    field_names,
    measure,
    perceptibility_fields,
    psnr,
    ssim,
)

SHIFT_PSNR = 20 * math.log10(255 / 2)  # a uniform change of 2/255: MSE = (2/255)^2


def _levels(*shape, seed, low=0, high=256):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=gen).double() / 255


def test_identical_images():
    images = _levels(3, 3, 16, 16, seed=0)
    values = measure(images, images.clone())
    assert values["l2"].tolist() == [0.0] * 3
    assert values["linf"].tolist() == [0.0] * 3
    assert values["linf255"].tolist() == [0.0] * 3
    assert torch.isinf(values["psnr"]).all() and (values["psnr"] > 0).all()
    assert values["ssim"].tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    fields = perceptibility_fields(images, images.clone(), images.clone())
    for to in ("base", "start"):
        for agg in ("mean", "worst"):
            assert fields[f"poison_psnr_{to}_{agg}"] is None  # infinite: JSON null
            assert fields[f"poison_l2_{to}_{agg}"] == 0.0
            assert fields[f"poison_linf255_{to}_{agg}"] == 0.0
            assert fields[f"poison_ssim_{to}_{agg}"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
def test_uniform_shift_of_two_levels(sign):
    # levels 2..253, so the shifted image stays inside [0, 1]
    reference = _levels(2, 3, 16, 16, seed=1, low=2, high=254)
    images = reference + sign * 2 / 255
    values = measure(images, reference)
    assert values["linf255"].tolist() == pytest.approx([2.0, 2.0], abs=1e-9)
    assert values["linf"].tolist() == pytest.approx([2 / 255] * 2, abs=1e-12)
    assert values["l2"].tolist() == pytest.approx([2 / 255 * (3 * 16 * 16) ** 0.5] * 2, abs=1e-9)
    assert values["psnr"].tolist() == pytest.approx([SHIFT_PSNR] * 2, abs=1e-6)
    assert psnr(images, reference).tolist() == pytest.approx([SHIFT_PSNR] * 2, abs=1e-6)


def test_psnr_of_float32_8bit_images():
    """Poisons are float32 k/255 images: the shift is exact up to float32 rounding."""
    reference = _levels(2, 3, 16, 16, seed=2, low=2, high=254).float()
    images = (torch.round(reference * 255) + 2) / 255
    assert psnr(images, reference).tolist() == pytest.approx([SHIFT_PSNR] * 2, abs=1e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_is_scikit_images_gaussian_ssim(channels):
    reference = _levels(3, channels, 24, 20, seed=3)
    gen = torch.Generator().manual_seed(4)
    images = reference + 0.05 * torch.randn(reference.shape, generator=gen, dtype=torch.float64)
    images = images.clamp(0, 1)
    expected = []
    for x, y in zip(images.numpy(), reference.numpy(), strict=True):
        options = dict(
            data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        if channels == 1:
            expected.append(structural_similarity(x[0], y[0], **options))
        else:
            expected.append(structural_similarity(x, y, channel_axis=0, **options))
    values = ssim(images, reference)
    assert values.tolist() == pytest.approx(expected, abs=1e-12)
    assert measure(images, reference)["ssim"].tolist() == pytest.approx(expected, abs=1e-12)
    assert all(0.0 < v < 1.0 for v in expected)
    # SSIM is symmetric in its two images
    assert ssim(reference, images).tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_on_tiny_images_uses_the_largest_odd_window(channels):
    reference = _levels(2, channels, 8, 8, seed=5)
    gen = torch.Generator().manual_seed(6)
    images = reference + 0.05 * torch.randn(reference.shape, generator=gen, dtype=torch.float64)
    images = images.clamp(0, 1)
    expected = [
        structural_similarity(x[0], y[0], data_range=1.0, win_size=7)
        if channels == 1
        else structural_similarity(x, y, channel_axis=0, data_range=1.0, win_size=7)
        for x, y in zip(images.numpy(), reference.numpy(), strict=True)
    ]
    assert ssim(images, reference).tolist() == pytest.approx(expected, abs=1e-12)


def test_ssim_accepts_float32_tensors_with_grad():
    reference = _levels(2, 3, 16, 16, seed=7).float()
    images = (reference + 1 / 255).clamp(0, 1).requires_grad_(True)
    values = ssim(images, reference)
    assert values.dtype == torch.float64 and values.shape == (2,)


def test_mean_and_worst_over_a_trials_poisons():
    bases = _levels(3, 3, 16, 16, seed=8, low=8, high=248)
    starts = bases.clone()
    starts[1] = (starts[1] + 1 / 255).clamp(0, 1)  # a watermarked start differs from its base
    # three poisons, 1, 3 and 5 levels above their bases everywhere, plus a little noise
    gen = torch.Generator().manual_seed(9)
    shifts = torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64).view(-1, 1, 1, 1) / 255
    noise = torch.randint(-1, 2, bases.shape, generator=gen).double() / 255
    poisons = bases + shifts + noise
    fields = perceptibility_fields(poisons, bases, starts)
    for to, reference in (("base", bases), ("start", starts)):
        values = measure(poisons, reference)
        for metric in ("l2", "linf", "linf255"):
            assert fields[f"poison_{metric}_{to}_mean"] == pytest.approx(
                float(values[metric].mean())
            )
            assert fields[f"poison_{metric}_{to}_worst"] == pytest.approx(
                float(values[metric].max())
            )
        for metric in ("psnr", "ssim"):
            assert fields[f"poison_{metric}_{to}_mean"] == pytest.approx(
                float(values[metric].mean())
            )
            assert fields[f"poison_{metric}_{to}_worst"] == pytest.approx(
                float(values[metric].min())
            )
    # the worst poison is the one shifted most: largest distance, lowest PSNR and SSIM
    values = measure(poisons, bases)
    assert int(values["l2"].argmax()) == 2 and int(values["psnr"].argmin()) == 2
    assert int(values["ssim"].argmin()) == 2
    assert fields["poison_linf255_base_worst"] == pytest.approx(6.0)
    assert fields["poison_psnr_base_worst"] < fields["poison_psnr_base_mean"]
    assert fields["poison_ssim_base_worst"] < fields["poison_ssim_base_mean"]


def test_one_unchanged_poison_makes_the_psnr_mean_null_not_the_worst():
    bases = _levels(2, 3, 16, 16, seed=10, low=2, high=254)
    poisons = bases.clone()
    poisons[1] = poisons[1] + 2 / 255
    fields = perceptibility_fields(poisons, bases, bases)
    assert fields["poison_psnr_base_mean"] is None
    assert fields["poison_psnr_base_worst"] == pytest.approx(SHIFT_PSNR, abs=1e-6)


def test_field_names_are_the_fields_written():
    images = _levels(2, 3, 16, 16, seed=11)
    fields = perceptibility_fields(images + 1 / 255, images, images)
    assert list(fields) == field_names()
    assert len(set(field_names())) == len(field_names()) == 2 * 5 * 2
    assert all(isinstance(value, float) and math.isfinite(value) for value in fields.values()), (
        "every field of changed poisons is a finite number"
    )
