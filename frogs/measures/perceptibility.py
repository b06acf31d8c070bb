"""How visible a poison is: L2, L∞ (also in /255), PSNR and SSIM against a reference image.

Every trial measures its poisons against the image each is labelled as (the original base) and
against its crafting start (the watermarked base), and records the mean and the worst over the
trial's poisons. SSIM is scikit-image's (Wang et al. 2004: Gaussian window, σ = 1.5); pixels are
in [0, 1] (``data_range=1``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

# Per metric: whether a larger value is worse (distances) or better (PSNR, SSIM).
METRICS = {"l2": True, "linf": True, "linf255": True, "psnr": False, "ssim": False}
REFERENCES = ("base", "start")
_GAUSSIAN_SIDE = 11  # the 11x11 window that sigma = 1.5 implies


def psnr(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for [0, 1] pixels (inf where the images are equal)."""
    mse = (images - reference).double().pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image pair (N,C,H,W), 1.0 for identical images."""
    from skimage.metrics import structural_similarity  # imported when first needed: job start

    a = images.detach().cpu().double().numpy()
    b = reference.detach().cpu().double().numpy()
    side = min(a.shape[-2:])
    options: dict[str, Any] = {"data_range": 1.0}
    if side >= _GAUSSIAN_SIDE:
        options.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    else:  # tiny test images: the largest odd uniform window that fits
        options["win_size"] = side if side % 2 else side - 1
    values = [
        structural_similarity(x[0], y[0], **options)
        if x.shape[0] == 1
        else structural_similarity(x, y, channel_axis=0, **options)
        for x, y in zip(a, b, strict=True)
    ]
    return torch.tensor(values, dtype=torch.float64)


def measure(images: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each metric of ``images`` against ``reference``, one value per image."""
    delta = (images - reference).double().flatten(1)
    linf = delta.abs().amax(dim=1)
    return {
        "l2": delta.norm(dim=1),
        "linf": linf,
        "linf255": linf * 255.0,
        "psnr": psnr(images, reference),
        "ssim": ssim(images, reference),
    }


def _plain(value: float) -> float | None:
    """A JSON-safe float: inf (PSNR of an unchanged image) becomes None."""
    return float(value) if math.isfinite(value) else None


def perceptibility_fields(
    poisons: torch.Tensor, bases: torch.Tensor, starts: torch.Tensor
) -> dict[str, float | None]:
    """Record fields ``poison_<metric>_<to>_<mean|worst>`` for ``to`` in base, start.

    ``worst`` is the largest distance or the smallest PSNR / SSIM over the trial's poisons. A
    PSNR is null where a poison equals its reference (infinite PSNR).
    """
    fields: dict[str, float | None] = {}
    for to, reference in (("base", bases), ("start", starts)):
        for metric, values in measure(poisons, reference).items():
            larger_is_worse = METRICS[metric]
            worst = values.max() if larger_is_worse else values.min()
            finite = values[torch.isfinite(values)]
            mean = float(values.mean()) if len(finite) == len(values) else float("inf")
            fields[f"poison_{metric}_{to}_mean"] = _plain(mean)
            fields[f"poison_{metric}_{to}_worst"] = _plain(float(worst))
    return fields


def field_names() -> list[str]:
    """Every record field that ``perceptibility_fields`` writes."""
    return [
        f"poison_{metric}_{to}_{agg}"
        for to in REFERENCES
        for metric in METRICS
        for agg in ("mean", "worst")
    ]
