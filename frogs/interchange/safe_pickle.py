"""The one restricted unpickler for every pickle frogs reads that it did not write itself.

A pickle names the callables that rebuild its objects, and ``pickle.load`` imports and calls
whatever it names: a file from elsewhere (a CIFAR-10 batch in the data root, another tool's
poisons) could run ``os.system``. ``safe_load`` hands the unpickler only the globals on an
``AllowList`` and refuses every other name with one line naming it (``UnsafePickleError``).
Lookups are exact: a dotted name (protocol 4's ``builtins.object.__subclasses__``) is refused
unless it is itself on the list. Python 2 names (``copy_reg``, ``__builtin__``) are mapped to
Python 3's first, as ``pickle`` does.

Plain containers (list, tuple, dict; sets at protocol 4 and later), ints, floats, strings and
bytes need no globals, except that protocols 0-2 rebuild ``bytes`` with ``_codecs.encode(text,
"latin1")`` (``bytes()`` when empty); those two are allowed with exactly those arguments.

- ``ARRAYS``: numpy arrays, dtypes and scalars, for protocols 0-5 and pickles written by numpy
  1 (``numpy.core``) or 2 (``numpy._core``). Object arrays are fine: their items go through the
  same unpickler.
- ``INTERCHANGE``: ``ARRAYS`` and in-memory PIL images (``PIL.Image.Image``; its
  ``__setstate__`` rebuilds the pixels from mode, size, palette and raw bytes). Protocols 2-5
  pickle an image as ``PIL.Image.Image`` called through NEWOBJ; protocols 0-1 go through
  ``copyreg._reconstructor(PIL.Image.Image, object, None)``, which is allowed with exactly
  those arguments. An image-file subclass (``PIL.PngImagePlugin.PngImageFile`` and the like,
  what ``Image.open`` returns) is read as a plain ``PIL.Image.Image``: the pickled state
  starts with the same five fields and ``Image.__setstate__`` ignores the file-specific ones,
  so no plugin code runs and the plugin module is not even imported.

Errors: a refused global, a truncated or otherwise corrupt file raise ``UnsafePickleError``
(a ``FrogsError`` and a ``pickle.UnpicklingError``), a missing or unreadable file
``DataNotFoundError`` (a ``FileNotFoundError``); each message is one line starting with the path.

Not guarded: the memory a pickle asks for (a huge list, array or image is built as asked).
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from frogs.errors import DataNotFoundError, FrogsError

Resolver = Callable[[], object]
"""Returns what the unpickler gets for an allowed global (imported only when a pickle names it)."""

PLAIN_TYPES = "lists, tuples, dicts, numbers, strings, bytes"


class UnsafePickleError(FrogsError, pickle.UnpicklingError):
    """A pickle frogs will not load: it names a global that is not allowed, or it is truncated
    or corrupt. The message is one line: the path, then what was refused or went wrong."""


class _Refused(pickle.UnpicklingError):
    """Raised inside the unpickler; ``safe_loads`` turns it into an ``UnsafePickleError``."""


@dataclass(frozen=True)
class AllowList:
    """The globals a pickle may name, and what the unpickler gets for each.

    ``names`` maps an exact ``(module, name)`` to a resolver; ``patterns`` are ``(module regex,
    name regex, resolver)`` triples matched in full (used for PIL's many image-file classes);
    ``description`` says in words what the globals build, for the refusal message.
    """

    description: str
    names: Mapping[tuple[str, str], Resolver]
    patterns: tuple[tuple[re.Pattern[str], re.Pattern[str], Resolver], ...] = ()

    def __add__(self, other: AllowList) -> AllowList:
        return AllowList(
            f"{self.description}, {other.description}",
            MappingProxyType({**self.names, **other.names}),
            self.patterns + other.patterns,
        )

    @property
    def allowed(self) -> str:
        """Everything a pickle may hold under this list, in words."""
        return f"{self.description}, {PLAIN_TYPES}"

    def resolve(self, module: str, name: str) -> object | None:
        """What the unpickler gets for ``module.name``, or None when it is not allowed."""
        resolver = self.names.get((module, name)) or _BYTES.get((module, name))
        if resolver is None:
            resolver = next(
                (r for m, n, r in self.patterns if m.fullmatch(module) and n.fullmatch(name)),
                None,
            )
        return None if resolver is None else resolver()


def _attribute(module: str, name: str) -> Resolver:
    return lambda: getattr(importlib.import_module(module), name)


def _numpy(submodule: str, name: str) -> Resolver:
    """numpy's own function from ``numpy._core`` (numpy 2) or ``numpy.core`` (numpy 1),
    whichever spelling the pickle used, without importing numpy 2's deprecated alias."""

    def resolve() -> object:
        try:
            module = importlib.import_module(f"numpy._core.{submodule}")
        except ImportError:
            module = importlib.import_module(f"numpy.core.{submodule}")
        return getattr(module, name)

    return resolve


def _short(value: object) -> str:
    """``value`` for a one-line message: as is when short and printable, else ascii, cut."""
    text = value if isinstance(value, str) else repr(value)
    if text.isprintable() and len(text) <= 80:
        return text
    return ascii(text[:80]) + ("..." if len(text) > 80 else "")


def _call(function: str, *args: object) -> str:
    """A refused call for a one-line message: ``_codecs.encode('x', 'rot13')``."""
    return f"{function}({', '.join(_short(repr(a)) for a in args)})"


def _latin1_bytes(text: object = None, encoding: object = None) -> bytes:
    """``_codecs.encode`` as protocols 0-2 use it to rebuild ``bytes``: (str, "latin1") only."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused(_call("_codecs.encode", text, encoding))
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    """``bytes()`` as protocols 0-2 use it for ``b""``: no arguments only."""
    if args:
        raise _Refused(_call("builtins.bytes", *args))
    return b""


def _image_class() -> type:
    from PIL import Image

    return Image.Image


def _reconstruct_image(cls: object = None, base: object = None, state: object = None) -> object:
    """``copyreg._reconstructor`` as protocols 0-1 use it for a PIL image: a bare
    ``PIL.Image.Image`` (``object.__new__``) that BUILD then fills through ``__setstate__``."""
    if cls is not _image_class() or base is not object or state is not None:
        raise _Refused(_call("copyreg._reconstructor", cls, base, state))
    return object.__new__(cls)


_BYTES: Mapping[tuple[str, str], Resolver] = MappingProxyType(
    {("_codecs", "encode"): lambda: _latin1_bytes, ("builtins", "bytes"): lambda: _empty_bytes}
)

ARRAYS = AllowList(
    "numpy arrays and scalars",
    MappingProxyType(
        {
            ("numpy.core.multiarray", "_reconstruct"): _numpy("multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"): _numpy("multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"): _numpy("multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"): _numpy("multiarray", "scalar"),
            # protocol 5 arrays
            ("numpy.core.numeric", "_frombuffer"): _numpy("numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"): _numpy("numeric", "_frombuffer"),
            ("numpy", "ndarray"): _attribute("numpy", "ndarray"),
            ("numpy", "dtype"): _attribute("numpy", "dtype"),
        }
    ),
)
"""numpy arrays, dtypes and scalars (and plain containers): enough for a CIFAR-10 batch."""

_PIL_PLUGIN = re.compile(r"PIL\.[A-Za-z0-9_]+ImagePlugin")
_PIL_IMAGE_FILE = re.compile(r"[A-Za-z0-9_]+ImageFile")

INTERCHANGE = ARRAYS + AllowList(
    "PIL images",
    MappingProxyType(
        {
            ("PIL.Image", "Image"): _image_class,
            ("copyreg", "_reconstructor"): lambda: _reconstruct_image,
            ("builtins", "object"): lambda: object,
        }
    ),
    ((_PIL_PLUGIN, _PIL_IMAGE_FILE, _image_class),),
)
"""``ARRAYS`` and PIL images: what poisoning-benchmark's files hold."""


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """A Python 2 global's Python 3 name (``__builtin__.eval`` -> ``builtins.eval``), as the
    stock unpickler maps it; other names unchanged."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, allowed: AllowList, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        found = self._allowed.resolve(module, name)
        if found is None:
            raise _Refused(f"{_short(module)}.{_short(name)}")
        return found


def safe_loads(
    data: bytes,
    allowed: AllowList = INTERCHANGE,
    *,
    source: str = "<bytes>",
    encoding: str = "ASCII",
) -> Any:
    """Unpickle ``data`` allowing only the globals in ``allowed``.

    ``source`` names the data in error messages (a path). ``encoding`` decodes Python 2 ``str``
    objects as in ``pickle.load``: ``"latin1"`` for Python 2 pickles holding numpy arrays, such
    as CIFAR-10's batches.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), allowed, encoding).load()
    except _Refused as exc:
        raise UnsafePickleError(
            f"{source}: refused to unpickle {exc} (allowed: {allowed.allowed})"
        ) from None
    except Exception as exc:  # anything raised while decoding untrusted bytes means "corrupt"
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise UnsafePickleError(
            f"{source}: truncated or corrupt pickle ({type(exc).__name__}: {_short(reason)})"
        ) from exc


def safe_load(
    path: str | os.PathLike[str], allowed: AllowList = INTERCHANGE, *, encoding: str = "ASCII"
) -> Any:
    """Unpickle the file at ``path`` allowing only the globals in ``allowed`` (see
    ``safe_loads``); a missing or unreadable file raises ``DataNotFoundError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataNotFoundError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return safe_loads(data, allowed, source=str(path), encoding=encoding)
