"""One minibatch training loop for every stage that trains: pretraining, the transfer head, the
end-to-end victim. Data are in-memory tensors, so batches are index slices, not a DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from frogs.errors import NumericalError
from frogs.models.precision import autocast, channels_last


@dataclass(frozen=True)
class TrainSeeds:
    """The seeds of one training run: ``init`` seeds the module's initialisation (torch's global
    RNG, through ``seeded``), ``order`` the clean batches' order and ``slots`` where extra rows
    (poisons) join them (``epoch_batches``)."""

    init: int
    order: int
    slots: int


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's global RNG (CPU, and CUDA once in use) seeded with ``seed`` inside the block and
    restored after it, so that one stage's seeding never leaks into the next."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads, then restore the previous setting.

    Tiny models (a linear head on cached features) train several times faster on one thread: a
    parallel region per small op costs more than it saves, and far more when the cores are busy.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def epoch_batches(
    num_clean: int,
    num_extra: int,
    batch_size: int,
    order_generator: torch.Generator,
    slot_generator: torch.Generator,
) -> list[torch.Tensor]:
    """One epoch's minibatches of row indices: clean rows shuffled, extra rows in fixed slots.

    The clean rows ``0..num_clean-1`` are shuffled by ``order_generator`` alone and cut into
    batches of ``batch_size``, so a run with extra rows (poisons) sees exactly the clean batches
    of a run without them, in the same order. Each extra row ``num_clean + j`` joins one of those
    batches, drawn from ``slot_generator`` (its own stream: it never shifts the clean order). This
    is what makes a poisoned run and its clean control comparable batch for batch (Fig. 2).
    """
    order = torch.randperm(num_clean, generator=order_generator)
    batches = list(order.split(batch_size))
    if num_extra:
        slots = torch.randint(len(batches), (num_extra,), generator=slot_generator)
        extra = torch.arange(num_clean, num_clean + num_extra)
        for slot in slots.unique().tolist():
            batches[slot] = torch.cat([batches[slot], extra[slots == slot]])
    return batches


def fit(
    module: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    weight_decay: float = 0.0,
    final_lr: float | None = None,
    hold_epochs: int = 0,
    num_clean: int | None = None,
    slot_seed: int = 0,
    params: Iterable[nn.Parameter] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    progress: str | None = None,
    amp: bool = False,
) -> None:
    """Train ``module`` with Adam on (inputs, labels) for ``epochs`` passes in shuffled minibatches.

    ``generator`` (a CPU generator) fixes the shuffling, so two runs with equal seeds see equal
    batches. Rows from ``num_clean`` on (poisons) are placed by ``epoch_batches`` into fixed slots
    drawn from ``slot_seed``, leaving the clean batches as they are without them. ``final_lr``
    decays the rate exponentially, epoch by epoch, from ``lr`` (kept for the first
    ``hold_epochs``) to ``final_lr`` in the last epoch.
    A non-finite loss raises NumericalError rather than training on garbage. ``amp`` (resolved by
    ``frogs.models.precision.resolve_amp``) runs the forward pass under bf16 autocast on the inputs'
    device (no loss scaling needed) with channels-last images; see
    ``frogs.models.architectures.prepare_for_device`` for the module.
    """
    params = list(module.parameters() if params is None else params)
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    scheduler = None
    held = max(hold_epochs - 1, 0)  # the first epoch always runs at ``lr``
    if final_lr is not None and epochs - 1 - held > 0:
        gamma = (final_lr / lr) ** (1.0 / (epochs - 1 - held))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: gamma ** max(0, epoch - held)
        )
    device = inputs.device
    inputs = channels_last(inputs, amp)
    n = len(inputs)
    num_clean = n if num_clean is None else num_clean
    slot_generator = torch.Generator().manual_seed(slot_seed)
    module.train()
    bar = tqdm(total=epochs, desc=progress, leave=False, disable=progress is None)
    for epoch in range(epochs):
        for batch in epoch_batches(num_clean, n - num_clean, batch_size, generator, slot_generator):
            batch = batch.to(device)
            with autocast(amp, device):
                logits = module(inputs[batch])
            loss = nn.functional.cross_entropy(logits.float(), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if not torch.isfinite(loss):
            raise NumericalError(f"training loss became {loss.item()} in epoch {epoch + 1}")
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch)
        bar.update()
    bar.close()
    module.eval()


@torch.no_grad()
def predict_in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, batch_size: int = 512
) -> torch.Tensor:
    """``fn`` applied to ``inputs`` in slices, concatenated (bounded memory, no grad)."""
    return torch.cat([fn(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
