"""The one way frogs and its analysis write a file: readers see the old file or the whole new one.

Cache entries, checkpoints and their sidecars, poison and feature artefacts, unpacked data,
tables, figures, reports and benchmark figures all go through ``atomic_write``: the content is
written to a temporary file in the same directory (``.NAME.XXXX.tmp``), flushed to disk, then
renamed onto ``path`` with ``os.replace``; on any error the temporary file is removed and ``path``
is left as it was. The new file gets the mode ``open()`` would give it (mkstemp's is 0600).

``results.jsonl`` is the exception: records are appended whole, never replaced
(``frogs.store.records.RecordWriter``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]


@functools.cache
def new_file_mode() -> int:
    """The permission bits ``open()`` gives a new file under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike[str], content: Content) -> Path:
    """Write ``content`` to ``path`` atomically and return ``path``.

    ``content`` is the bytes to write, a string (written as UTF-8), or a function that writes to
    the binary file handle it is given (``torch.save``, ``savefig``, ``shutil.copyfileobj``).
    Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), new_file_mode())
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
