"""Atomic writing of every analysis output (tables, figures, the report).

Each file is written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader (or a crashed run) never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import pandas as pd
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

FIGURE_FORMATS = ("png", "pdf")


@functools.cache
def _file_mode() -> int:
    """The mode ``open()`` would give a new file (mkstemp's is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temporary binary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
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
