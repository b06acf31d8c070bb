"""The 95 % Wilson interval of a success rate: one definition for the job's summary table
(``frogs.store.report``) and the analysis (``analysis.stats``), importable without the analysis
package's plotting stack."""

from __future__ import annotations

import numpy as np


def wilson_interval(
    successes: float | np.ndarray, n: float | np.ndarray, z: float = 1.96
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Wilson score interval for a binomial proportion (scalars or arrays; NaN where n = 0).

    Preferred over the normal approximation because it stays inside [0, 1] and is
    sensible for the small n and extreme rates that per-configuration groups have.
    """
    k = np.asarray(successes, dtype=float)
    m = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / m
        z2 = z * z
        denom = 1.0 + z2 / m
        centre = (p + z2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
        # the interval holds p exactly: rounding would put 0/11's lower end at 3e-17
        low = np.minimum(np.clip(centre - half, 0.0, 1.0), p)
        high = np.maximum(np.clip(centre + half, 0.0, 1.0), p)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high
