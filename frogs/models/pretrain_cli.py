"""``frogs pretrain [--out PATH] [OVERRIDES...]``: train the clean model once, write it to a file.

The overrides compose the same config as ``frogs`` itself; the clean model comes from
``frogs.models.pretrain.load_clean_model`` (so the shared cache is filled too) and is written with
its SHA-256 sidecar by ``frogs.store.checkpoint.save_checkpoint``. Any job then reuses it with the
printed ``model.checkpoint=PATH model.checkpoint_sha256=SHA``, on any machine, without pretraining.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from frogs import __version__
from frogs.config.compose import compose_settings, error_line
from frogs.config.settings import JobSettings
from frogs.data.datasets import load_dataset
from frogs.data.task import resolve_task
from frogs.errors import ConfigError, FrogsError
from frogs.experiment.prepare import configure_threads, resolve_device
from frogs.models.pretrain import CleanModel, clean_model_key, dataset_fingerprint, load_clean_model
from frogs.store.cache import ArtifactCache
from frogs.store.checkpoint import save_checkpoint
from frogs.store.records import git_sha
from frogs.victims import VICTIMS

log = logging.getLogger("frogs")

DEFAULT_FOLDER = Path("checkpoints")


@dataclass(frozen=True)
class WrittenCheckpoint:
    """What ``frogs pretrain`` wrote: the file, its checksum and the model's accuracies."""

    path: Path
    sha256: str
    clean: CleanModel
    meta: dict[str, Any]

    @property
    def overrides(self) -> str:
        """The overrides that make a job load this checkpoint."""
        return f"model.checkpoint={self.path} model.checkpoint_sha256={self.sha256}"


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``frogs: error:`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"frogs: error: {message} (usage: {self.format_usage().strip()})", file=sys.stderr)
        raise SystemExit(2)


def checkpoint_meta(settings: JobSettings, data_fingerprint: dict, clean: CleanModel) -> dict:
    """The metadata stored in the checkpoint and its sidecar."""
    trained = clean.source == "trained"
    return {
        "model": asdict(settings.model),
        "dataset": data_fingerprint,
        "train_accuracy": clean.train_accuracy,
        "test_accuracy": clean.test_accuracy,
        "train_size": 0 if clean.train_indices is None else len(clean.train_indices),
        "pretrain_seconds": clean.pretrain_seconds if trained else None,
        "architecture": repr(clean.model),
        "loaded_weights": clean.loaded_weights,
        "pretrain_classes": None if clean.classes is None else list(clean.classes),
        "frogs_version": __version__,
        "git_sha": git_sha(),
    }


def write_pretrained(settings: JobSettings, out: Path | None = None) -> WrittenCheckpoint:
    """Get the clean model of ``settings`` (cache or training) and write it as a checkpoint.

    ``out`` defaults to ``checkpoints/<model>-<dataset>-<cache key>.pt`` in the working folder.
    """
    if settings.model.checkpoint:
        raise ConfigError(
            f"model.checkpoint={settings.model.checkpoint!r} is not allowed with `frogs pretrain`;"
            " expected null (the command writes a checkpoint; copy the file and its "
            ".sha256.json to share one)"
        )
    device = resolve_device(settings.device)
    configure_threads(settings.threads)
    data = load_dataset(settings.dataset)
    cache = ArtifactCache(Path(settings.cache_dir).expanduser())
    start = time.perf_counter()
    task = resolve_task(
        data, settings.dataset, VICTIMS.settings_class(settings.victim.name).default_task_classes
    )
    clean = load_clean_model(
        data, settings.model, cache, device, progress=settings.progress, task_classes=task.classes
    )
    log.info("clean model ready (%s) in %.1f s", clean.source, time.perf_counter() - start)
    if out is None:
        key = clean_model_key(data, settings.model, clean.model, clean.classes)
        out = DEFAULT_FOLDER / f"{settings.model.name}-{data.name}-{key}.pt"
    path = Path(out).expanduser().absolute()
    meta = checkpoint_meta(settings, dataset_fingerprint(data), clean)
    sha256 = save_checkpoint(path, clean.model.state_dict(), meta)
    return WrittenCheckpoint(path, sha256, clean, meta)


def _report(written: WrittenCheckpoint) -> str:
    clean = written.clean
    train = "n/a" if clean.train_accuracy is None else f"{clean.train_accuracy:.4f}"
    return "\n".join(
        [
            f"checkpoint: {written.path}",
            f"sha256: {written.sha256}",
            f"train accuracy: {train} ({written.meta['train_size']} images)",
            f"test accuracy: {clean.test_accuracy:.4f}",
            f"reuse with: {written.overrides}",
        ]
    )


def main(argv: Sequence[str]) -> int:
    """``frogs pretrain`` entry: exit status 0, or 2 after one ``frogs: error:`` line."""
    parser = _Parser(
        prog="frogs pretrain",
        description="Train the clean model of a config once and write it as a checkpoint.",
    )
    parser.add_argument("--out", type=Path, default=None, help="checkpoint file to write")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `frogs`")
    args = parser.parse_args(list(argv))
    logging.basicConfig(
        level=logging.INFO,
        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s",
        force=True,  # to this call's stderr (as analysis.cli)
    )
    try:
        written = write_pretrained(compose_settings(args.overrides), args.out)
    except FrogsError as exc:
        print(f"frogs: error: {exc}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException, OSError) as exc:
        print(f"frogs: error: {error_line(exc)}", file=sys.stderr)
        return 2
    print(_report(written))
    return 0
