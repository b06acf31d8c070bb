"""End-to-end retraining throughput (images per second): frogs' ``fit`` vs a bare training loop.

Both train the paper's AlexNet-CIFAR with Adam on the same in-memory CIFAR-shaped tensors, in
shuffled minibatches of the same size: the work of the end-to-end victim's retrain. The bare loop's
network holds torch's ``nn.LocalResponseNorm``, as a user's would; frogs' holds its bit-identical
faster layer (``frogs.models.layers``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from benchmarks.craft import cifar_alexnet
from benchmarks.timing import Measured, interleaved
from frogs.models.architectures import prepare_for_device
from frogs.models.train import fit

log = logging.getLogger(__name__)


def bare_fit(module, inputs, labels, epochs: int, lr: float, batch_size: int, generator) -> None:
    """The textbook loop: shuffle, slice, forward, cross-entropy, backward, Adam step."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
        for start in range(0, len(inputs), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(module(inputs[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    module.eval()


def run_train(
    images: int, epochs: int, repeats: int, device: torch.device, amp: bool = False
) -> Measured:
    """Images per second of frogs' ``fit`` and of the bare fp32 loop, interleaved. ``amp``: frogs
    trains under bf16 autocast with channels-last (``amp=true``), the bare loop stays fp32."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.rand(images, 3, 32, 32, generator=gen).to(device)
    labels = torch.randint(0, 10, (images,), generator=gen).to(device)
    lr, batch_size = 1.85e-5, 128  # the paper's end-to-end victim (Sec. 4)

    def fresh_model(channels_last: bool = False, torch_lrn: bool = False) -> nn.Module:
        model = prepare_for_device(
            cifar_alexnet(device, torch_lrn=torch_lrn), device, channels_last
        )
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def frogs_run() -> float:
        fit(
            fresh_model(amp),
            inputs,
            labels,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            generator=torch.Generator().manual_seed(0),
            amp=amp,
        )
        return images * epochs

    def bare_run() -> float:
        bare_fit(
            fresh_model(torch_lrn=True), inputs, labels, epochs, lr, batch_size, torch.Generator()
        )
        return images * epochs

    desc = "e2e retrain" + (" bf16" if amp else "")
    measured = interleaved({"frogs": frogs_run, "bare": bare_run}, repeats, desc=desc)
    log.info(
        "%s: frogs %.0f, bare fp32 %.0f images/s",
        desc,
        measured.median("frogs"),
        measured.median("bare"),
    )
    return measured
