"""Mixed precision (``amp=``): where bf16 autocast runs, and the context that applies it.

``amp=auto`` (the default) turns bf16 autocast with channels-last images on where the hardware
does bf16 natively, which is where it was measured to help: CUDA GPUs with bf16, and CPUs with
AVX512-BF16 or AMX (the issue's EPYC measurement: AlexNet-CIFAR training 417 -> 604 img/s). On a
CPU without them (such as this project's 2-core Xeon, AVX512 without BF16) bf16 is emulated and
slower (``python -m benchmarks --only amp``), so ``auto`` leaves it off; ``amp=true`` forces it.
Pixels, crafting steps, distances and losses always stay float32: only the network's forward
pass runs under autocast.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from frogs.errors import ConfigError

AMP_CHOICES = ("auto", "true", "false")
_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), not by emulation."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, name, None)
        if probe is not None:
            try:
                if probe():
                    return True
            except RuntimeError:
                pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in _CPU_FLAGS)


def device_has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device``."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def amp_setting(value: object) -> str:
    """``amp`` as one of ``auto``, ``true``, ``false`` (YAML booleans accepted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in AMP_CHOICES:
        raise ConfigError(
            f"amp={value!r} is not allowed; expected auto (bf16 where the device does it "
            "natively), true or false"
        )
    return text


def resolve_amp(value: object, device: torch.device) -> bool:
    """Whether a job on ``device`` runs its forward passes under bf16 autocast."""
    setting = amp_setting(value)
    if setting == "auto":
        return device_has_native_bf16(device)
    return setting == "true"


def autocast(enabled: bool, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def channels_last(images: torch.Tensor, enabled: bool) -> torch.Tensor:
    """``images`` (N, C, H, W) in channels-last layout when ``enabled`` (bf16 convolutions'
    fastest layout on both CUDA and oneDNN CPUs)."""
    if enabled and images.ndim == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images
