"""Atomic writing of every analysis output (tables, figures, the report).

Each file goes through frogs' one writer (``frogs.store.atomic.atomic_write``: a temporary file in
the same directory moved into place with ``os.replace``), so a reader (or a crashed run) never sees
a half-written file.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import pandas as pd
from matplotlib.figure import Figure

import frogs.store.atomic

logger = logging.getLogger(__name__)

FIGURE_FORMATS = ("png", "pdf")


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temporary binary file beside ``path``, then rename it to ``path``."""
    path = frogs.store.atomic.atomic_write(path, write)
    logger.debug("wrote %s", path)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_table(table: pd.DataFrame, out_dir: Path, stem: str) -> list[Path]:
    """Write ``table`` as ``stem.csv`` and, when pyarrow is importable, ``stem.parquet``."""
    out_dir = Path(out_dir)
    paths = [atomic_write_text(out_dir / f"{stem}.csv", table.to_csv(index=False))]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        logger.info("pyarrow is not installed: %s.parquet not written", stem)
        return paths
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    paths.append(atomic_write_bytes(out_dir / f"{stem}.parquet", buffer.getvalue()))
    return paths


def save_figure(
    fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (or ``formats``) in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = []
    for fmt in formats:
        paths.append(
            atomic_write(
                out_dir / f"{stem}.{fmt}",
                lambda handle, fmt=fmt: fig.savefig(
                    handle, format=fmt, dpi=150, bbox_inches="tight"
                ),
            )
        )
    return paths
