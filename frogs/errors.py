"""Exceptions that the command line turns into one clear line instead of a traceback."""


class FrogsError(Exception):
    """Base of every error frogs reports to the user as one line."""


class ConfigError(FrogsError, ValueError):
    """A configuration value is not allowed; the message names it and what is allowed."""


class DataNotFoundError(FrogsError, FileNotFoundError):
    """A dataset is not where it was looked for; the message says how to get it."""


class NumericalError(FrogsError, ArithmeticError):
    """NaN or Inf appeared in crafting or retraining; the trial is recorded as failed."""


class OutputError(FrogsError, OSError):
    """The job's output (``results.jsonl``) cannot be written: disk full, read-only, not a dir."""
