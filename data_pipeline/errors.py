"""The data pipeline's one exception type, so callers can tell bad input from bugs."""


class DataError(ValueError):
    """A data file, URL or value cannot be used; the message names it and says how to fix it."""
