"""``python -m analysis DIR [DIR ...]``: the same as ``frogs-analyze``."""

from analysis.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
