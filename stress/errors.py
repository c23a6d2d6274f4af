"""User-facing errors: each one ends a CLI run with exit code 2 and its message, no traceback."""


class StressError(Exception):
    """A problem the user can fix (bad config, bad loan tape, refused overwrite)."""


class ConfigError(StressError):
    """A config value is of the wrong type, out of range, or names something that does not exist."""


class TapeError(StressError):
    """The loan tape cannot be read or has invalid cells; the message lists every problem found."""


class OutputError(StressError):
    """The results cannot be written where asked (file exists, no permission, disk full)."""
