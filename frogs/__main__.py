"""Allow ``python -m frogs``."""

from frogs.cli import main

if __name__ == "__main__":
    main()
