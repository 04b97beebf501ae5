"""The one error family of net/ (for configuration; bad datagrams are counted, never raised)."""


class LimitsError(ValueError):
    """A network limit has a value the server cannot run with."""
