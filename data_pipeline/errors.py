"""The project's two bad-input exception types, so callers can tell bad input from bugs.

This module imports nothing, so CONFIG validation, the model registry and the file checks can all
raise them without loading TensorFlow or each other.
"""


class ConfigError(ValueError):
    """A CONFIG key or value is wrong; the message names the key, the value and the fix."""


class DataError(ValueError):
    """A data file, URL or value cannot be used; the message names it and says how to fix it."""
